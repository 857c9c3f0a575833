// Running a suite on one model (see runner.h).
#include "eval/runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "data/utf8.h"
#include "eval/bleu.h"
#include "eval/jsonl.h"
#include "eval/lm_metrics.h"
#include "eval/text_metrics.h"
#include "eval/text_util.h"
#include "load/model_bundle.h"
#include "model/generate.h"

namespace shardlm::eval {

EvalModel load_eval_model(const std::string& path, const std::string& tokenizer,
                          torch::Device device) {
  load::LoadOptions lo;
  lo.device = device;
  lo.tokenizer = tokenizer;
  lo.need_tokenizer = true;
  load::ModelBundle b = load::load_model(path, lo);
  EvalModel m;
  m.path = path;
  m.label = path;
  m.model = b.model;
  m.device = device;
  m.tokenizer_path = b.tokenizer_path;
  m.tok = std::move(*b.tokenizer);
  return m;
}

namespace {

// ---- helpers ----------------------------------------------------------------------------------

MetricResult make_metric(const std::string& name, Decomposable d, bool higher_is_better,
                         const BootstrapOptions& bs) {
  MetricResult m;
  m.name = name;
  m.higher_is_better = higher_is_better;
  m.ci = bootstrap(d, bs);
  m.value = m.ci.value;
  if (!std::isfinite(m.value)) m.ci.valid = false;  // no item had a value (e.g. coherence)
  m.data = std::move(d);
  return m;
}

// A metric without an interval (not a function of per-item statistics).
MetricResult plain_metric(const std::string& name, double value, bool higher_is_better) {
  MetricResult m;
  m.name = name;
  m.value = value;
  m.higher_is_better = higher_is_better;
  m.ci.value = value;
  return m;
}

std::vector<JsonLine> task_lines(const TaskConfig& t) {
  auto lines = read_jsonl(t.file);
  if (t.limit > 0 && static_cast<int64_t>(lines.size()) > t.limit) lines.resize(t.limit);
  SHARDLM_CHECK(!lines.empty(), core::DataError, "{}: no items (task {})", t.file, t.name);
  return lines;
}

// Generated continuations of `prompts` (greedy unless cfg says otherwise), as text.
std::vector<std::string> generate_texts(EvalModel& m, model::GenerationConfig cfg,
                                        const std::vector<std::string>& prompts) {
  if (m.tok.eos_id()) cfg.eos_ids.push_back(*m.tok.eos_id());
  if (m.tok.pad_id()) cfg.pad_id = *m.tok.pad_id();
  if (cfg.seed < 0) cfg.seed = 1234;  // reproducible reports
  model::DecodeFn decode = [&m](const std::vector<int64_t>& ids) {
    return m.tok.decode_bytes(std::vector<uint32_t>(ids.begin(), ids.end()));
  };
  model::Generator gen(m.model, cfg);
  gen.set_decoder(decode);
  const int64_t T = m.model->config().context_length;
  const int64_t room = std::max<int64_t>(1, T - cfg.max_new_tokens);
  std::vector<std::string> out;
  const size_t chunk = 16;
  for (size_t start = 0; start < prompts.size(); start += chunk) {
    std::vector<std::vector<int64_t>> batch;
    for (size_t i = start; i < std::min(prompts.size(), start + chunk); ++i) {
      std::vector<int64_t> ids = encode_ids(m.tok, prompts[i]);
      if (ids.empty() && m.tok.eos_id()) ids.push_back(*m.tok.eos_id());
      SHARDLM_CHECK(!ids.empty(), core::DataError, "prompt {} is empty and there is no EOS", i);
      if (static_cast<int64_t>(ids.size()) > room) ids.erase(ids.begin(), ids.end() - room);
      batch.push_back(std::move(ids));
    }
    model::GenerationOutput g = gen.generate(batch);
    for (const auto& seqs : g.sequences) {
      std::vector<int64_t> toks = seqs[0].tokens;
      if (!toks.empty() &&
          std::find(cfg.eos_ids.begin(), cfg.eos_ids.end(), toks.back()) != cfg.eos_ids.end())
        toks.pop_back();  // the EOS that ended it is not text
      model::TextStream ts(decode, cfg.stop_strings);
      for (int64_t id : toks) ts.push(id);
      ts.finish();
      out.push_back(data::utf8_sanitize(ts.text()));
    }
  }
  return out;
}

// ---- tasks -------------------------------------------------------------------------------------

void add_lm_metrics(TaskResult& r, const LmScores& s, const BootstrapOptions& bs, bool bytes) {
  auto ratio = [&](LmScores::Field num, LmScores::Field den, std::function<double(double)> f) {
    Decomposable d;
    for (const auto& it : s.items) d.items.push_back({it[num], it[den]});
    d.finalize = [f](const std::vector<double>& v) {
      return v.empty() || v[1] == 0 ? 0.0 : f(v[0] / v[1]);
    };
    return d;
  };
  auto id = [](double x) { return x; };
  r.metrics.push_back(make_metric(
      "perplexity", ratio(LmScores::kNll, LmScores::kTokens, [](double x) { return std::exp(x); }),
      false, bs));
  r.metrics.push_back(make_metric("loss", ratio(LmScores::kNll, LmScores::kTokens, id), false, bs));
  if (bytes)
    r.metrics.push_back(make_metric(
        "bits_per_byte",
        ratio(LmScores::kNll, LmScores::kBytes, [](double x) { return x / std::log(2.0); }), false,
        bs));
  r.metrics.push_back(make_metric("top1", ratio(LmScores::kTop1, LmScores::kTokens, id), true, bs));
  r.metrics.push_back(make_metric("top5", ratio(LmScores::kTop5, LmScores::kTokens, id), true, bs));
  r.items = static_cast<int64_t>(s.items.size());
}

void run_perplexity(const TaskConfig& t, EvalModel& m, const BootstrapOptions& bs, TaskResult& r) {
  if (!t.data.empty()) {
    data::LoaderConfig lc;
    lc.path = t.data;
    lc.split = t.split;
    lc.batch_size = t.batch_size;
    lc.seq_len = t.seq_len;
    lc.prefetch = 0;
    const LmScores s = perplexity_split(m.model, lc, t.max_batches, m.device, &m.tok);
    add_lm_metrics(r, s, bs, true);
    r.tokens = s.sum(LmScores::kTokens);
    r.detail = s.detail.to_json();
    return;
  }
  std::vector<std::string> texts;
  for (const auto& f : t.files) {
    std::ifstream in(f, std::ios::binary);
    SHARDLM_CHECK(in, core::DataError, "cannot read {} (task {})", f, t.name);
    texts.emplace_back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  SlidingWindow sw{t.window, t.stride, t.prefix_eos};
  const LmScores s = perplexity_texts(m.model, m.tok, texts, sw, m.device);
  add_lm_metrics(r, s, bs, true);
  r.tokens = s.sum(LmScores::kTokens);
  r.detail = s.detail.to_json();
}

void run_choice(const TaskConfig& t, EvalModel& m, const BootstrapOptions& bs, TaskResult& r) {
  std::vector<ChoiceItem> items;
  for (const auto& l : task_lines(t)) {
    ChoiceItem it;
    it.context = l.get<std::string>("context");
    it.choices = l.get<std::vector<std::string>>("choices");
    SHARDLM_CHECK(it.choices.size() >= 2, core::DataError, "{}: 'choices' needs at least two",
                  l.where());
    for (const auto& c : it.choices)
      SHARDLM_CHECK(!c.empty(), core::DataError, "{}: an empty choice has no tokens to score",
                    l.where());
    const auto& a = l.value.contains("answer") ? l.value["answer"] : nlohmann::json();
    if (a.is_number_integer()) {
      it.answer = a.get<int64_t>();
    } else if (a.is_string()) {
      auto pos = std::find(it.choices.begin(), it.choices.end(), a.get<std::string>());
      SHARDLM_CHECK(pos != it.choices.end(), core::DataError,
                    "{}: answer \"{}\" is not one of the choices", l.where(), a.get<std::string>());
      it.answer = pos - it.choices.begin();
    } else {
      SHARDLM_FAIL(core::DataError,
                   "{}: missing field 'answer' (the index or text of the "
                   "right choice)",
                   l.where());
    }
    SHARDLM_CHECK(it.answer >= 0 && it.answer < static_cast<int64_t>(it.choices.size()),
                  core::DataError, "{}: answer {} outside 0..{}", l.where(), it.answer,
                  it.choices.size() - 1);
    items.push_back(std::move(it));
  }
  const auto scores = score_choices(m.model, m.tok, items, m.device);
  std::vector<double> acc, acc_norm;
  for (size_t i = 0; i < items.size(); ++i) {
    acc.push_back(scores[i].pred == items[i].answer ? 1 : 0);
    acc_norm.push_back(scores[i].pred_norm == items[i].answer ? 1 : 0);
    r.samples.push_back({{"context", items[i].context},
                         {"choices", items[i].choices},
                         {"answer", items[i].answer},
                         {"loglik", scores[i].loglik},
                         {"pred", scores[i].pred},
                         {"pred_norm", scores[i].pred_norm}});
  }
  r.items = static_cast<int64_t>(items.size());
  r.metrics.push_back(make_metric("acc", mean_metric(acc), true, bs));
  r.metrics.push_back(make_metric("acc_norm", mean_metric(acc_norm), true, bs));
}

void run_factual(const TaskConfig& t, EvalModel& m, const BootstrapOptions& bs, TaskResult& r) {
  const auto lines = task_lines(t);
  std::vector<std::string> prompts;
  std::vector<std::vector<std::string>> answers, must_not;
  for (const auto& l : lines) {
    prompts.push_back(l.get<std::string>("prompt"));
    answers.push_back(l.get<std::vector<std::string>>("answers"));
    SHARDLM_CHECK(!answers.back().empty(), core::DataError, "{}: 'answers' is empty", l.where());
    must_not.push_back(l.get_or<std::vector<std::string>>("must_not", {}));
  }
  const auto outputs = generate_texts(m, t.generate, prompts);
  std::vector<double> exact, contains, violated;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto sentences = split_sentences(outputs[i]);
    const std::string first = sentences.empty() ? "" : sentences[0];
    const bool bad = !must_not[i].empty() && contains_match(outputs[i], must_not[i]) > 0;
    violated.push_back(bad ? 1 : 0);
    exact.push_back(bad ? 0 : exact_match(first, answers[i]));
    contains.push_back(bad ? 0 : contains_match(outputs[i], answers[i]));
    r.samples.push_back({{"prompt", prompts[i]},
                         {"output", outputs[i]},
                         {"answers", answers[i]},
                         {"exact", exact.back()},
                         {"contains", contains.back()},
                         {"must_not_violated", bad}});
  }
  r.items = static_cast<int64_t>(outputs.size());
  r.metrics.push_back(make_metric("exact", mean_metric(exact), true, bs));
  r.metrics.push_back(make_metric("contains", mean_metric(contains), true, bs));
  r.metrics.push_back(make_metric("must_not_rate", mean_metric(violated), false, bs));
}

void run_generation(const TaskConfig& t, EvalModel& m, const BootstrapOptions& bs, TaskResult& r) {
  auto wants = [&](const char* k) {
    return std::find(t.metrics.begin(), t.metrics.end(), k) != t.metrics.end();
  };
  const bool refs_needed = wants("bleu") || wants("chrf");
  const auto lines = task_lines(t);
  std::vector<std::string> prompts;
  std::vector<std::vector<std::string>> refs;
  for (const auto& l : lines) {
    prompts.push_back(l.get<std::string>("prompt"));
    if (refs_needed) {
      SHARDLM_CHECK(l.value.contains("references"), core::DataError,
                    "{}: missing field 'references' (metric {} of task {} needs them)", l.where(),
                    wants("bleu") ? "bleu" : "chrf", t.name);
      refs.push_back(l.get<std::vector<std::string>>("references"));
      SHARDLM_CHECK(!refs.back().empty(), core::DataError, "{}: 'references' is empty", l.where());
    }
  }
  const auto outputs = generate_texts(m, t.generate, prompts);
  r.items = static_cast<int64_t>(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    r.samples.push_back({{"prompt", prompts[i]}, {"output", outputs[i]}});
    if (refs_needed) r.samples.back()["references"] = refs[i];
  }
  if (wants("bleu")) {
    Decomposable d;
    const BleuConfig cfg = t.bleu;
    for (size_t i = 0; i < outputs.size(); ++i) {
      const BleuStats st = bleu_stats(outputs[i], refs[i], cfg);
      std::vector<double> v = st.correct;
      v.insert(v.end(), st.total.begin(), st.total.end());
      v.push_back(st.sys_len);
      v.push_back(st.ref_len);
      d.items.push_back(std::move(v));
      r.samples[i]["sentence_bleu"] = sentence_bleu(outputs[i], refs[i], cfg).score;
    }
    d.finalize = [cfg](const std::vector<double>& v) {
      const size_t n = static_cast<size_t>(cfg.max_order);
      BleuStats st;
      st.correct.assign(v.begin(), v.begin() + n);
      st.total.assign(v.begin() + n, v.begin() + 2 * n);
      st.sys_len = v[2 * n];
      st.ref_len = v[2 * n + 1];
      return compute_bleu(st, cfg).score;
    };
    r.metrics.push_back(make_metric("bleu", std::move(d), true, bs));
  }
  if (wants("chrf")) {
    Decomposable d;
    for (size_t i = 0; i < outputs.size(); ++i) d.items.push_back(chrf_stats(outputs[i], refs[i]));
    d.finalize = [](const std::vector<double>& v) { return compute_chrf(v); };
    r.metrics.push_back(make_metric("chrf", std::move(d), true, bs));
  }
  if (wants("diversity")) {
    std::vector<std::vector<std::string>> toks;
    std::vector<double> rep;
    for (const auto& o : outputs) {
      toks.push_back(words(o));
      rep.push_back(repetition_rate(toks.back(), 3));
    }
    for (int n = 1; n <= 3; ++n)
      r.metrics.push_back(plain_metric(fmt::format("distinct_{}", n), distinct_n(toks, n), true));
    r.metrics.push_back(plain_metric("entropy_2", ngram_entropy(toks, 2), true));
    r.metrics.push_back(plain_metric("self_bleu", self_bleu(outputs), false));
    r.metrics.push_back(make_metric("repetition_3", mean_metric(rep), false, bs));
  }
  if (wants("coherence")) {
    // Items without two sentences (cosine) or without tokens (PMI) count as
    // "no value" (0 weight), so the mean is over the items that have one.
    Decomposable cos, pmi;
    auto mean_of_defined = [](const std::vector<double>& s) {
      return s.empty() || s[1] == 0 ? std::numeric_limits<double>::quiet_NaN() : s[0] / s[1];
    };
    for (size_t i = 0; i < outputs.size(); ++i) {
      const double c = embedding_coherence(m.model, m.tok, prompts[i] + outputs[i], m.device);
      const double p = prompt_pmi(m.model, m.tok, prompts[i], outputs[i], m.device);
      cos.items.push_back(std::isfinite(c) ? std::vector<double>{c, 1} : std::vector<double>{0, 0});
      pmi.items.push_back(std::isfinite(p) ? std::vector<double>{p, 1} : std::vector<double>{0, 0});
      r.samples[i]["coherence"] = std::isfinite(c) ? nlohmann::json(c) : nlohmann::json();
      r.samples[i]["pmi"] = std::isfinite(p) ? nlohmann::json(p) : nlohmann::json();
    }
    cos.finalize = mean_of_defined;
    pmi.finalize = mean_of_defined;
    r.metrics.push_back(make_metric("coherence", std::move(cos), true, bs));
    r.metrics.push_back(make_metric("pmi", std::move(pmi), true, bs));
  }
}

}  // namespace

TaskResult run_task(const TaskConfig& t, EvalModel& m, const BootstrapOptions& bs) {
  TaskResult r;
  r.name = t.name;
  r.kind = t.kind;
  const auto t0 = std::chrono::steady_clock::now();
  if (t.kind == "perplexity")
    run_perplexity(t, m, bs, r);
  else if (t.kind == "choice")
    run_choice(t, m, bs, r);
  else if (t.kind == "factual")
    run_factual(t, m, bs, r);
  else if (t.kind == "generation")
    run_generation(t, m, bs, r);
  else
    SHARDLM_FAIL(core::ConfigError, "task {}: unknown kind '{}'", t.name, t.kind);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

ModelResults run_suite(const SuiteConfig& suite, EvalModel& m,
                       const std::function<void(const std::string&)>& log) {
  BootstrapOptions bs;
  bs.resamples = suite.bootstrap;
  bs.seed = static_cast<uint64_t>(suite.seed);
  ModelResults out;
  out.label = m.label;
  out.path = m.path;
  for (const auto& t : suite.tasks) {
    out.tasks.push_back(run_task(t, m, bs));
    if (log)
      log(fmt::format("{}: task {} ({}) done in {:.2f} s", m.label, t.name, t.kind,
                      out.tasks.back().seconds));
  }
  return out;
}

}  // namespace shardlm::eval
