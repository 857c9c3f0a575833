// The official OpenAI SDK for Node (npm `openai` 4.x) against a real `shardlm
// serve` started with --api-key (tests/serve/test_continuous.cpp, ServeSdk,
// starts the server and runs this script): completions and chat, streamed and
// not, with n, logprobs, stop and seed; a wrong key gets the SDK's
// AuthenticationError (401). Prints "N passed, M failed"; exits 1 on a failure.
//   node sdk_test.mjs --port PORT --key KEY
import OpenAI from "openai";
import assert from "node:assert/strict";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (i % 2 ? acc : [...acc, [a.replace(/^--/, ""), all[i + 1]]]), []),
);
const baseURL = `http://127.0.0.1:${args.port}/v1`;
const client = new OpenAI({ baseURL, apiKey: args.key, maxRetries: 0, timeout: 60_000 });

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

const model = (await client.models.list()).data[0].id;

// Gathers a stream's choices: text (or content) and logprob tokens per index.
async function collect(stream, chat) {
  const out = {};
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      const o = (out[c.index] ??= { text: "", tokens: [], finish: null, role: null });
      if (chat) {
        if (c.delta.role) o.role = c.delta.role;
        if (c.delta.content) o.text += c.delta.content;
        if (c.logprobs && c.logprobs.content) o.tokens.push(...c.logprobs.content.map((t) => t.token));
      } else {
        o.text += c.text;
        if (c.logprobs) o.tokens.push(...c.logprobs.tokens);
      }
      if (c.finish_reason) o.finish = c.finish_reason;
    }
  }
  return { choices: out, usage };
}

await check("models.list names the served model", async () => {
  assert.ok(model.length > 0);
});

const completion = {
  model,
  prompt: "the cat sat on the",
  max_tokens: 12,
  temperature: 0.9,
  seed: 42,
  n: 2,
  logprobs: 2,
  stop: ["zzz"],
};

await check("completions: n, logprobs, seed replay", async () => {
  const a = await client.completions.create(completion);
  assert.equal(a.object, "text_completion");
  assert.equal(a.choices.length, 2);
  for (const c of a.choices) {
    const lp = c.logprobs;
    assert.equal(lp.tokens.length, lp.token_logprobs.length);
    assert.equal(lp.tokens.length, lp.top_logprobs.length);
    assert.equal(lp.tokens.length, lp.text_offset.length);
    // Up to 2 alternatives and the chosen token; tokens that are parts of a
    // UTF-8 character all read U+FFFD, so their keys may coincide.
    for (const t of lp.top_logprobs) assert.ok(Object.keys(t).length >= 1 && Object.keys(t).length <= 3);
    assert.ok(["stop", "length"].includes(c.finish_reason));
  }
  assert.equal(a.shardlm.seed, 42);
  const b = await client.completions.create(completion);
  assert.deepEqual(b.choices.map((c) => c.text), a.choices.map((c) => c.text));
  assert.deepEqual(b.choices.map((c) => c.logprobs.tokens), a.choices.map((c) => c.logprobs.tokens));
});

await check("completions: a stream adds up to the whole answer", async () => {
  const whole = await client.completions.create(completion);
  const s = await client.completions.create({ ...completion, stream: true, stream_options: { include_usage: true } });
  const got = await collect(s, false);
  for (const c of whole.choices) {
    assert.equal(got.choices[c.index].text, c.text);
    assert.deepEqual(got.choices[c.index].tokens, c.logprobs.tokens);
    assert.equal(got.choices[c.index].finish, c.finish_reason);
  }
  assert.equal(got.usage.completion_tokens, whole.usage.completion_tokens);
});

await check("completions: stop ends the text before it", async () => {
  // A printable ASCII character of a greedy continuation (a random model's
  // bytes are often not valid UTF-8) is the stop string.
  let prompt = null;
  let text = "";
  let stop = null;
  for (const p of ["the old man", "the cat sat", "a bird sang in the", "fire", "the cat", "in the", "the"]) {
    const g = await client.completions.create({ model, prompt: p, max_tokens: 30, temperature: 0 });
    text = g.choices[0].text;
    const at = [...text].findIndex((ch, i) => i > 0 && /[!-~]/.test(ch));
    if (at > 0) {
      prompt = p;
      stop = [...text][at];
      break;
    }
  }
  assert.ok(stop, "no printable ASCII character in any continuation");
  const s = await client.completions.create({ model, prompt, max_tokens: 30, temperature: 0, stop });
  assert.equal(s.choices[0].text, text.slice(0, text.indexOf(stop)));
  assert.equal(s.choices[0].finish_reason, "stop");
});

const chat = {
  model,
  messages: [
    { role: "system", content: "a bird sang" },
    { role: "user", content: "the dog ran to the tree" },
  ],
  max_tokens: 10,
  temperature: 0.8,
  seed: 7,
  n: 2,
  logprobs: true,
  top_logprobs: 3,
  stop: ["qqq"],
};

await check("chat: n, logprobs, seed replay", async () => {
  const a = await client.chat.completions.create(chat);
  assert.equal(a.object, "chat.completion");
  assert.equal(a.choices.length, 2);
  for (const c of a.choices) {
    assert.equal(c.message.role, "assistant");
    assert.equal(typeof c.message.content, "string");
    for (const t of c.logprobs.content) {
      assert.equal(typeof t.token, "string");
      assert.equal(t.top_logprobs.length, 3);
      assert.ok(Array.isArray(t.bytes));
    }
  }
  const b = await client.chat.completions.create(chat);
  assert.deepEqual(b.choices.map((c) => c.message.content), a.choices.map((c) => c.message.content));
});

await check("chat: a stream adds up to the whole answer", async () => {
  const whole = await client.chat.completions.create(chat);
  const s = await client.chat.completions.create({ ...chat, stream: true });
  const got = await collect(s, true);
  for (const c of whole.choices) {
    assert.equal(got.choices[c.index].role, "assistant");
    assert.equal(got.choices[c.index].text, c.message.content);
    assert.deepEqual(got.choices[c.index].tokens, c.logprobs.content.map((t) => t.token));
    assert.equal(got.choices[c.index].finish, c.finish_reason);
  }
});

await check("a wrong API key is the SDK's AuthenticationError (401)", async () => {
  const wrong = new OpenAI({ baseURL, apiKey: "not-the-key", maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(
    wrong.chat.completions.create({ ...chat, n: 1 }),
    (e) => e instanceof OpenAI.AuthenticationError && e.code === "invalid_api_key",
  );
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
