// Configuration: typed reads, overrides, and errors that name file, key and expectation.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "core/config.h"

using shardlm::core::ConfigError;
using shardlm::core::ConfigSection;
using shardlm::core::RunConfig;

namespace {

struct OptimConfig {
  double lr = 3e-4;
  int64_t steps = 100;
  std::string kind = "adamw";
  std::vector<double> betas{0.9, 0.95};
  static OptimConfig from(const ConfigSection& s) {
    OptimConfig c;
    c.lr = s.get("lr", c.lr);
    c.steps = s.get("steps", c.steps);
    c.kind = s.get("kind", c.kind);
    c.betas = s.get("betas", c.betas);
    return c;
  }
  void validate() const {
    shardlm::core::config_require(lr > 0 && lr < 1, "lr", std::to_string(lr), "a number in (0, 1)");
    shardlm::core::config_require(kind == "adamw" || kind == "adam8bit", "kind", kind,
                                  "one of adamw, adam8bit");
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Config, DefaultsWhenAbsent) {
  auto rc = RunConfig::parse("", "run.toml");
  auto c = rc.get<OptimConfig>("optim");
  EXPECT_DOUBLE_EQ(c.lr, 3e-4);
  EXPECT_EQ(c.steps, 100);
  EXPECT_EQ(c.kind, "adamw");
}

TEST(Config, ReadsValuesAndIntegerAsDouble) {
  auto rc = RunConfig::parse(
      "[optim]\nlr = 0\nsteps = 7\nkind = \"adam8bit\"\nbetas = [0.8, 0.9]\n", "run.toml");
  auto s = rc.section("optim");
  EXPECT_DOUBLE_EQ(s.get("lr", 1.0), 0.0);
  auto c = OptimConfig::from(s);
  EXPECT_EQ(c.steps, 7);
  EXPECT_EQ(c.kind, "adam8bit");
  EXPECT_EQ(c.betas, (std::vector<double>{0.8, 0.9}));
}

TEST(Config, OverridesWinOverTheFile) {
  auto rc = RunConfig::parse("[optim]\nlr = 0.1\nsteps = 7\n", "run.toml",
                             {"--optim.lr=0.002", "optim.kind=adam8bit", "--new.deep.key=[1, 2]"});
  auto c = rc.get<OptimConfig>("optim");
  EXPECT_DOUBLE_EQ(c.lr, 0.002);
  EXPECT_EQ(c.steps, 7);
  EXPECT_EQ(c.kind, "adam8bit");  // not TOML: taken as a string
  EXPECT_EQ(rc.section("new.deep").get("key", std::vector<int64_t>{}),
            (std::vector<int64_t>{1, 2}));
}

TEST(Config, WrongTypeNamesFileLineKeyAndExpectation) {
  auto rc = RunConfig::parse("[optim]\n\nsteps = \"many\"\n", "run.toml");
  std::string msg = error_of([&] { rc.get<OptimConfig>("optim"); });
  EXPECT_NE(msg.find("run.toml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("optim.steps"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"many\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("an integer"), std::string::npos) << msg;
}

TEST(Config, OutOfRangeNamesFileKeyValueAndRange) {
  auto rc = RunConfig::parse("[optim]\nlr = 5.0\n", "run.toml");
  std::string msg = error_of([&] { rc.get<OptimConfig>("optim"); });
  EXPECT_NE(msg.find("run.toml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'optim.lr'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("5.0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(0, 1)"), std::string::npos) << msg;
  // An override that makes it out of range names the key too.
  auto rc2 = RunConfig::parse("", "run.toml", {"--optim.kind=sgd"});
  msg = error_of([&] { rc2.get<OptimConfig>("optim"); });
  EXPECT_NE(msg.find("optim.kind"), std::string::npos) << msg;
  EXPECT_NE(msg.find("adamw"), std::string::npos) << msg;
}

TEST(Config, UnknownKeyIsRejectedWithSuggestion) {
  auto rc = RunConfig::parse("[optim]\nlr = 0.1\nstep = 4\n", "run.toml");
  rc.get<OptimConfig>("optim");
  std::string msg = error_of([&] { rc.check_unknown_keys(); });
  EXPECT_NE(msg.find("run.toml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'optim.step'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'optim.steps'"), std::string::npos) << msg;
  // Without the typo every key is known.
  auto ok = RunConfig::parse("[optim]\nlr = 0.1\n", "run.toml");
  ok.get<OptimConfig>("optim");
  EXPECT_NO_THROW(ok.check_unknown_keys());
}

TEST(Config, MalformedTomlNamesFileLineAndColumn) {
  std::string msg = error_of([] { RunConfig::parse("[optim]\nlr = = 3\n", "bad.toml"); });
  EXPECT_NE(msg.find("bad.toml:2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed TOML"), std::string::npos) << msg;
}

TEST(Config, LoadsFromFileAndReportsMissingFile) {
  std::string path = testing::TempDir() + "shardlm_cfg_test.toml";
  {
    std::ofstream f(path);
    f << "[optim]\nlr = 0.25\n";
  }
  auto rc = RunConfig::load(path, {"--optim.steps=9"});
  auto c = rc.get<OptimConfig>("optim");
  EXPECT_DOUBLE_EQ(c.lr, 0.25);
  EXPECT_EQ(c.steps, 9);
  EXPECT_NE(rc.to_json().find("0.25"), std::string::npos);
  std::remove(path.c_str());
  std::string msg = error_of([&] { RunConfig::load(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

// toml++ 3.3 would print these keys unquoted, and the run's config.toml would
// not parse back (fuzz_config found it with the override -'''ta.path="x"):
// they are refused by name, from the file and from overrides.
TEST(Config, KeysWithQuotesOrControlCharactersAreRefused) {
  std::string msg = error_of([] { RunConfig::parse("[\"it's\"]\npath = 'x'\n", "q.toml"); });
  EXPECT_NE(msg.find("q.toml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("it's"), std::string::npos) << msg;
  msg = error_of([] { RunConfig::parse("\"a\\tb\" = 1\n", "t.toml"); });
  EXPECT_NE(msg.find("control character"), std::string::npos) << msg;
  EXPECT_NE(msg.find("a\\tb"), std::string::npos) << msg;  // escaped, not raw
  EXPECT_THROW(RunConfig::parse("", "o.toml", {"-'''ta.path=\"x\""}), ConfigError);
  EXPECT_THROW(RunConfig::parse("", "o.toml", {"train.x={\"a'b\"=1}"}), ConfigError);
  // Keys that need quoting but print correctly still work and round-trip.
  RunConfig ok = RunConfig::parse("[\"a b\"]\n\"c.d\" = 1\n", "ok.toml", {"x.\"y z\"=2"});
  RunConfig again = RunConfig::parse(ok.to_toml(), "again.toml");
  EXPECT_EQ(again.to_toml(), ok.to_toml());
}

TEST(Config, MalformedOverrideIsRejected) {
  RunConfig rc;
  EXPECT_THROW(rc.apply_override("--novalue"), ConfigError);
  EXPECT_THROW(rc.apply_override("--a..b=1"), ConfigError);
  rc.apply_override("--a=1");
  EXPECT_THROW(rc.apply_override("--a.b=1"), ConfigError);  // 'a' is a value, not a section
}
