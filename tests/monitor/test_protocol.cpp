// Protocol: the schema validator, the encoders (every message they produce
// validates against monitor/protocol.schema.json), control commands and their
// bytes for MPI_Bcast.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <fstream>

#include "monitor/control.h"
#include "monitor/protocol.h"
#include "monitor/schema.h"

using namespace shardlm::monitor;
using json = nlohmann::json;

namespace {
std::string errors_of(const json& j) {
  std::string s;
  for (auto& e : protocol_validator().errors(j)) s += e + "; ";
  return s;
}
}  // namespace

TEST(ProtocolSchema, EmbeddedSchemaIsTheFileInTheRepository) {
  std::ifstream in(std::string(SHARDLM_SOURCE_DIR) + "/monitor/protocol.schema.json");
  std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(json::parse(file), json::parse(protocol_schema_text()));
}

TEST(ProtocolSchema, ValidatorChecksTypesRangesRequiredAndUnknownFields) {
  json ok = {{"v", 1},    {"type", "step"}, {"ts", 1.5},  {"rank", 0},
             {"step", 3}, {"loss", 2.5},    {"lr", 1e-3}, {"time", {{"total", 0.3}}}};
  EXPECT_EQ(errors_of(ok), "");
  json j = ok;
  j["rank"] = -1;
  EXPECT_NE(errors_of(j).find("/rank: must be >= 0"), std::string::npos) << errors_of(j);
  j = ok;
  j.erase("time");
  EXPECT_NE(errors_of(j).find("missing required field 'time'"), std::string::npos);
  j = ok;
  j["bogus"] = 1;
  EXPECT_NE(errors_of(j).find("unknown field 'bogus'"), std::string::npos);
  j = ok;
  j["step"] = 2.5;
  EXPECT_NE(errors_of(j).find("/step: expected integer"), std::string::npos);
  j = ok;
  j["v"] = 2;
  EXPECT_NE(errors_of(j), "");
  j = ok;
  j["loss"] = nullptr;  // NaN travels as null
  EXPECT_EQ(errors_of(j), "");
  j = ok;
  j["type"] = "no_such_type";
  EXPECT_NE(errors_of(j).find("unknown message type"), std::string::npos);
}

TEST(ProtocolSchema, ConditionalArgsOfControlCommands) {
  json c = {
      {"v", 1}, {"type", "control"}, {"id", "c1"}, {"command", "set_lr"}, {"args", {{"lr", 0.1}}}};
  EXPECT_EQ(errors_of(c), "");
  c["args"]["lr"] = 0;
  EXPECT_NE(errors_of(c).find("/args/lr: must be > 0"), std::string::npos) << errors_of(c);
  c.erase("args");
  EXPECT_NE(errors_of(c).find("missing required field 'args'"), std::string::npos);
  json b = {{"v", 1},
            {"type", "control"},
            {"id", "c2"},
            {"command", "set_batch"},
            {"args", {{"micro_batch", 4}}}};
  EXPECT_NE(errors_of(b).find("accumulation"), std::string::npos);
  json h = {{"v", 1}, {"type", "hello"}, {"role", "producer"}};
  EXPECT_NE(errors_of(h).find("'rank'"), std::string::npos);
}

TEST(ProtocolSchema, UnsupportedKeywordIsRefused) {
  EXPECT_THROW(SchemaValidator(json{{"type", "string"}, {"pattern", "^a"}}), ProtocolError);
  EXPECT_THROW(SchemaValidator(json{{"$ref", "#/$defs/missing"}}), ProtocolError);
}

TEST(ProtocolEncode, EveryEncoderProducesSchemaValidMessages) {
  StepMetrics m;
  m.step = 12;
  m.epoch = 0;
  m.loss = std::nan("");
  m.lr = 3e-4;
  m.grad_norm = std::numeric_limits<double>::infinity();
  m.tokens = 4096;
  m.tokens_per_s = 12000;
  m.time.total = 0.3;
  m.time.forward = 0.1;
  m.time.backward = -1;  // impossible values are left out, not sent
  m.mem.host_rss = 1 << 20;
  m.gpu = GpuStats{0, 97.0, 40.0, 65.0, 300.5, int64_t{1} << 30, int64_t{80} << 30};
  m.hparams.lr = 3e-4;
  m.hparams.micro_batch = 8;
  m.hparams.accumulation = 0;  // invalid: omitted
  m.extra["loss_scale_log2"] = 16;
  json s = encode_step(1, m);
  EXPECT_EQ(errors_of(s), "") << s.dump();
  EXPECT_TRUE(s["loss"].is_null());
  EXPECT_TRUE(s["grad_norm"].is_null());
  EXPECT_FALSE(s["time"].contains("backward"));
  EXPECT_FALSE(s["hparams"].contains("accumulation"));
  EXPECT_EQ(s["rank"], 1);
  EXPECT_EQ(json::parse(dump(s))["loss"], nullptr);  // the wire form too

  ValidationMetrics v;
  v.step = 100;
  v.loss = 2.0;
  v.perplexity = std::exp(2.0);
  v.metrics["accuracy"] = 0.5;
  EXPECT_EQ(errors_of(encode_validation(0, v)), "");
  Event e;
  e.kind = EventKind::kCheckpointSaved;
  e.step = 100;
  e.message = "saved";
  e.data = {{"path", "x"}};
  EXPECT_EQ(errors_of(encode_event(0, e)), "");
  for (EventKind k : {EventKind::kRunStarted, EventKind::kRunFinished, EventKind::kEarlyStop,
                      EventKind::kPaused, EventKind::kResumed, EventKind::kStopped,
                      EventKind::kError, EventKind::kWarning, EventKind::kInfo}) {
    e.kind = k;
    EXPECT_EQ(errors_of(encode_event(0, e)), "") << event_kind_name(k);
  }
  EXPECT_EQ(errors_of(encode_run_info(0, "r1", 2, json{{"parameters", 100}})), "");
  // The trainer's model description (ModelConfig::to_json) is checked: the keys the
  // dashboard reads must be there, so a renamed key fails here, not as a blank Run tab.
  json model = {{"vocab_size", 4096}, {"context_length", 64}, {"n_layer", 4},
                {"n_head", 2},        {"d_model", 128},       {"positional", "learned"}};
  EXPECT_EQ(errors_of(encode_run_info(0, "r1", 2, json{{"model", model}})), "");
  EXPECT_NE(errors_of(encode_run_info(0, "r1", 2, json{{"model", {{"params", 100}}}})), "");
  model.erase("n_layer");
  EXPECT_NE(errors_of(encode_run_info(0, "r1", 2, json{{"model", model}})), "");
  ControlCommand c;
  c.id = "c9";
  c.kind = ControlKind::kSetLr;
  c.value = 1e-4;
  EXPECT_EQ(errors_of(encode_ack(0, c, 42, true, "")), "");
}

TEST(ProtocolParse, MalformedInputGetsTypedErrors) {
  auto code_of = [](const std::string& text) {
    try {
      parse_message(text);
    } catch (const ProtocolError& e) {
      return e.code();
    }
    return std::string("ok");
  };
  EXPECT_EQ(code_of("{not json"), "bad_json");
  EXPECT_EQ(code_of("[1,2]"), "bad_json");
  EXPECT_EQ(code_of("{\"v\":1}"), "bad_message");
  EXPECT_EQ(code_of("{\"v\":1,\"type\":\"launch_missiles\"}"), "unknown_type");
  EXPECT_EQ(code_of("{\"v\":1,\"type\":\"hello\",\"role\":\"admin\"}"), "bad_message");
  EXPECT_EQ(code_of("{\"v\":1,\"type\":\"hello\",\"role\":\"viewer\"}"), "ok");
  EXPECT_EQ(code_of(std::string(
                "{\"v\":1,\"type\":\"hello\",\"role\":\"viewer\",\"client\":\"\xff\xfe\"}")),
            "bad_json");  // invalid UTF-8
}

TEST(ProtocolControl, FromJsonReadsTypedArgsAndRejectsBadOnes) {
  auto parse = [](const std::string& cmd, json args) {
    return ControlCommand::from_json(
        {{"v", 1}, {"type", "control"}, {"id", "x"}, {"command", cmd}, {"args", args}});
  };
  EXPECT_DOUBLE_EQ(parse("set_lr", {{"lr", 0.01}}).value, 0.01);
  EXPECT_EQ(parse("set_batch", {{"micro_batch", 4}, {"accumulation", 8}}).accumulation, 8);
  auto es = parse("set_early_stopping", {{"enabled", true}, {"patience", 3}, {"min_delta", 0.01}});
  EXPECT_TRUE(es.early.enabled);
  EXPECT_EQ(es.early.patience, 3);
  EXPECT_EQ(parse("resume_from", {{"checkpoint", "step-10"}}).path, "step-10");
  EXPECT_EQ(parse("pause", json::object()).kind, ControlKind::kPause);
  EXPECT_THROW(parse("set_lr", {{"lr", -1}}), ProtocolError);
  EXPECT_THROW(parse("set_lr", {{"lr", "fast"}}), ProtocolError);
  EXPECT_THROW(parse("set_batch", {{"micro_batch", 0}, {"accumulation", 1}}), ProtocolError);
  EXPECT_THROW(parse("explode", json::object()), ProtocolError);
  auto insp = ControlCommand::from_json(
      {{"v", 1}, {"type", "inspect"}, {"id", "i"}, {"what", "attention"}});
  EXPECT_EQ(insp.kind, ControlKind::kInspect);
  EXPECT_EQ(insp.inspect_what, "attention");
}

TEST(ProtocolControl, BytesRoundTripKeepsEveryField) {
  std::vector<ControlCommand> cmds(4);
  cmds[0].id = "a";
  cmds[0].kind = ControlKind::kSetLr;
  cmds[0].value = 2e-4;
  cmds[1].id = "b";
  cmds[1].kind = ControlKind::kSetBatch;
  cmds[1].micro_batch = 2;
  cmds[1].accumulation = 16;
  cmds[2].id = "c";
  cmds[2].kind = ControlKind::kSetEarlyStopping;
  cmds[2].early = {true, 5, 0.001};
  cmds[3].id = "d";
  cmds[3].kind = ControlKind::kPause;
  for (auto& c : cmds) EXPECT_EQ(errors_of(c.to_json()), "") << c.to_json().dump();
  auto back = decode_commands(encode_commands(cmds));
  ASSERT_EQ(back.size(), 4u);
  EXPECT_DOUBLE_EQ(back[0].value, 2e-4);
  EXPECT_EQ(back[1].micro_batch, 2);
  EXPECT_EQ(back[1].accumulation, 16);
  EXPECT_EQ(back[2].early.patience, 5);
  EXPECT_DOUBLE_EQ(back[2].early.min_delta, 0.001);
  EXPECT_EQ(back[3].kind, ControlKind::kPause);
  EXPECT_EQ(back[3].id, "d");
  EXPECT_THROW(decode_commands("{\"no\":1}"), ProtocolError);
  EXPECT_TRUE(decode_commands("[]").empty());
}

// Under mpiexec -n 2: rank 0's commands arrive on every rank, identical.
TEST(ProtocolMpi, BroadcastCommandsReachEveryRank) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<ControlCommand> mine;
  if (rank == 0) {
    ControlCommand c;
    c.id = "lr-1";
    c.kind = ControlKind::kSetLr;
    c.value = 5e-5;
    mine.push_back(c);
    c.id = "p-1";
    c.kind = ControlKind::kPause;
    mine.push_back(c);
  } else {
    ControlCommand junk;  // ignored off the root
    junk.id = "junk";
    mine.push_back(junk);
  }
  shardlm::core::MpiComm world(MPI_COMM_WORLD);
  auto got = broadcast_commands(mine, world);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, "lr-1");
  EXPECT_DOUBLE_EQ(got[0].value, 5e-5);
  EXPECT_EQ(got[1].kind, ControlKind::kPause);
  // An empty step boundary costs one small broadcast and returns nothing.
  EXPECT_TRUE(broadcast_commands({}, world).empty());
}
