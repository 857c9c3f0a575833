// The mpirun / srun lines of `shardlm launch`, built for made-up machines:
// mapping and binding follow cores and ranks, threads per rank are divided
// among local ranks, multi-host lines talk TCP, SLURM gets srun --mpi=pmix,
// and the printed line is one a shell turns back into the same argv.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "launcher/launch_line.h"

namespace shardlm::launcher {
namespace {

using Args = std::vector<std::string>;

LaunchOptions train_on(int ranks) {
  LaunchOptions o;
  o.ranks = ranks;
  o.program = "/opt/shardlm/bin/shardlm";
  o.args = {"train", "--config", "run.toml"};
  return o;
}

LaunchSite machine(int cores, bool root = false) {
  LaunchSite s;
  s.cores = cores;
  s.root = root;
  return s;
}

LaunchSite slurm_node(int cores, int tasks, int nodes) {
  LaunchSite s = machine(cores);
  s.env = {
      {"SLURM_JOB_ID", "42"},
      {"SLURM_NTASKS", std::to_string(tasks)},
      {"SLURM_JOB_NUM_NODES", std::to_string(nodes)},
      {"SLURM_TASKS_PER_NODE", std::to_string(tasks / nodes) + "(x" + std::to_string(nodes) + ")"},
      {"SLURM_CPUS_ON_NODE", std::to_string(cores)}};
  return s;
}

TEST(LaunchLine, HostsParse) {
  auto h = parse_hosts("node-a:2,10.0.0.7:4,solo");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].host, "node-a");
  EXPECT_EQ(h[0].slots, 2);
  EXPECT_EQ(h[1].host, "10.0.0.7");
  EXPECT_EQ(h[1].slots, 4);
  EXPECT_EQ(h[2].host, "solo");
  EXPECT_EQ(h[2].slots, 1);
  for (const char* bad : {"h1:0", "h1:x", "h1:2x", ",h2", "h1:2,", ":3", ""})
    EXPECT_THROW(parse_hosts(bad), core::ConfigError) << bad;
}

TEST(LaunchLine, OneHostBindsEachRankToItsShareOfCores) {
  auto line = build_launch(train_on(2), machine(8, /*root=*/true));
  EXPECT_EQ(line.kind, "mpirun");
  EXPECT_EQ(line.threads, 4);
  EXPECT_EQ(line.argv, (Args{"mpirun", "-n", "2", "--allow-run-as-root", "--map-by", "slot:PE=4",
                             "--bind-to", "core", "-x", "OMP_NUM_THREADS=4",
                             "/opt/shardlm/bin/shardlm", "train", "--config", "run.toml"}));
  EXPECT_TRUE(line.env.empty());
}

TEST(LaunchLine, OneCorePerRankNeedsNoPe) {
  auto line = build_launch(train_on(2), machine(2));
  EXPECT_EQ(line.argv, (Args{"mpirun", "-n", "2", "--map-by", "slot", "--bind-to", "core", "-x",
                             "OMP_NUM_THREADS=1", "/opt/shardlm/bin/shardlm", "train", "--config",
                             "run.toml"}));
}

TEST(LaunchLine, MoreRanksThanCoresAreLeftUnbound) {
  auto line = build_launch(train_on(4), machine(2));
  EXPECT_EQ(line.threads, 1);
  EXPECT_EQ(line.str(),
            "mpirun -n 4 --map-by slot --bind-to none --oversubscribe -x OMP_NUM_THREADS=1 "
            "/opt/shardlm/bin/shardlm train --config run.toml");
}

TEST(LaunchLine, ThreadsFromOptionThenUserVariable) {
  auto site = machine(8);
  site.env["OMP_NUM_THREADS"] = "2";
  EXPECT_EQ(build_launch(train_on(2), site).threads, 2);
  auto opt = train_on(2);
  opt.threads = 3;
  auto line = build_launch(opt, site);
  EXPECT_EQ(line.threads, 3);
  EXPECT_NE(line.str().find("--map-by slot:PE=3 --bind-to core -x OMP_NUM_THREADS=3 "),
            std::string::npos)
      << line.str();
  opt.threads = 5;  // 2 x 5 > 8 cores: binding would overlap
  EXPECT_NE(build_launch(opt, site).str().find("--bind-to none"), std::string::npos);
}

TEST(LaunchLine, ForwardsShardlmNcclAndCudaVariablesButNotSlurms) {
  auto site = machine(4);
  site.env = {{"SHARDLM_LOG", "debug"},
              {"NCCL_DEBUG", "INFO"},
              {"CUDA_VISIBLE_DEVICES", "0,1"},
              {"SLURM_CONF", "/etc/slurm.conf"}};
  auto opt = train_on(2);
  opt.launcher = "mpirun";
  auto s = build_launch(opt, site).str();
  EXPECT_NE(s.find("-x OMP_NUM_THREADS=2 -x CUDA_VISIBLE_DEVICES -x NCCL_DEBUG -x SHARDLM_LOG "),
            std::string::npos)
      << s;
  EXPECT_EQ(s.find("SLURM"), std::string::npos) << s;
}

TEST(LaunchLine, UniformHostsMapByPprAndTalkTcp) {
  auto opt = train_on(0);
  opt.hosts = parse_hosts("h1:2,h2:2");
  opt.net = "10.77.0.0/24";
  auto line = build_launch(opt, machine(8, true));
  EXPECT_EQ(line.argv, (Args{"mpirun",
                             "-n",
                             "4",
                             "--allow-run-as-root",
                             "--host",
                             "h1:2,h2:2",
                             "--map-by",
                             "ppr:2:node:PE=4",
                             "--bind-to",
                             "core",
                             "-x",
                             "OMP_NUM_THREADS=4",
                             "--mca",
                             "pml",
                             "ob1",
                             "--mca",
                             "btl",
                             "tcp,vader,self",
                             "--mca",
                             "btl_tcp_if_include",
                             "10.77.0.0/24",
                             "--mca",
                             "oob_tcp_if_include",
                             "10.77.0.0/24",
                             "/opt/shardlm/bin/shardlm",
                             "train",
                             "--config",
                             "run.toml"}));
}

TEST(LaunchLine, UnevenHostsMapBySlotAndExtraMcaComesLast) {
  auto opt = train_on(3);
  opt.hosts = parse_hosts("big:2,small:1");
  opt.mca = {"plm_rsh_agent=/tmp/agent.sh"};
  auto s = build_launch(opt, machine(4)).str();
  EXPECT_NE(s.find("mpirun -n 3 --host big:2,small:1 --map-by slot:PE=2 --bind-to core "
                   "-x OMP_NUM_THREADS=2 --mca pml ob1 --mca btl tcp,vader,self "
                   "--mca plm_rsh_agent /tmp/agent.sh /opt/shardlm/bin/shardlm"),
            std::string::npos)
      << s;
}

TEST(LaunchLine, RanksMustFitTheListedSlots) {
  auto opt = train_on(5);
  opt.hosts = parse_hosts("h1:2,h2:2");
  EXPECT_THROW(build_launch(opt, machine(8)), core::ConfigError);
  EXPECT_THROW(build_launch(train_on(0), machine(8)), core::ConfigError);  // no -n, no hosts
}

TEST(LaunchLine, SlurmUsesSrunWithPmix) {
  auto line = build_launch(train_on(0), slurm_node(8, 2, 1));
  EXPECT_EQ(line.kind, "srun");
  EXPECT_EQ(line.threads, 4);
  EXPECT_EQ(line.str(),
            "OMP_NUM_THREADS=4 srun --mpi=pmix --kill-on-bad-exit=0 /opt/shardlm/bin/shardlm "
            "train --config run.toml");
  auto site = slurm_node(8, 2, 1);
  site.env["SLURM_CPUS_PER_TASK"] = "3";
  auto with_n = build_launch(train_on(2), site);
  EXPECT_EQ(with_n.threads, 3);
  EXPECT_EQ(with_n.argv[3], "--ntasks=2");
}

TEST(LaunchLine, SlurmAcrossNodesTalksTcp) {
  auto opt = train_on(0);
  opt.net = "ib0";
  auto line = build_launch(opt, slurm_node(16, 8, 2));
  EXPECT_EQ(line.threads, 4);
  EXPECT_EQ(line.env.at("OMPI_MCA_pml"), "ob1");
  EXPECT_EQ(line.env.at("OMPI_MCA_btl"), "tcp,vader,self");
  EXPECT_EQ(line.env.at("OMPI_MCA_btl_tcp_if_include"), "ib0");
}

TEST(LaunchLine, LauncherChoice) {
  auto opt = train_on(2);
  opt.launcher = "mpirun";
  EXPECT_EQ(build_launch(opt, slurm_node(8, 2, 1)).kind, "mpirun");
  opt.launcher = "auto";
  opt.hosts = parse_hosts("a:1,b:1");  // hand-listed hosts mean mpirun even in an allocation
  EXPECT_EQ(build_launch(opt, slurm_node(8, 2, 1)).kind, "mpirun");
  opt.launcher = "srun";
  EXPECT_THROW(build_launch(opt, machine(8)), core::ConfigError);
  opt.launcher = "pbs";
  EXPECT_THROW(build_launch(opt, machine(8)), core::ConfigError);
}

TEST(LaunchLine, RejectsBadOptions) {
  auto opt = train_on(2);
  opt.args.clear();
  EXPECT_THROW(build_launch(opt, machine(2)), core::ConfigError);
  opt = train_on(2);
  opt.mca = {"no_equals"};
  EXPECT_THROW(build_launch(opt, machine(2)), core::ConfigError);
  opt = train_on(-1);
  EXPECT_THROW(build_launch(opt, machine(2)), core::ConfigError);
}

TEST(LaunchLine, QuotedLineIsTheSameArgvForAShell) {
  EXPECT_EQ(shell_quote("run.toml"), "run.toml");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  auto opt = train_on(2);
  opt.program = "/bin/echo";
  opt.args = {"train", "--train.run_dir=my runs/it's", "--x=$HOME", "*", "a\"b"};
  auto line = build_launch(opt, machine(2));
  // The shell must hand back exactly these words after the program.
  std::string quoted;
  for (size_t i = line.argv.size() - opt.args.size(); i < line.argv.size(); ++i)
    quoted += " " + shell_quote(line.argv[i]);
  ASSERT_NE(line.str().find("/bin/echo" + quoted), std::string::npos) << line.str();
  FILE* p = popen(("printf '%s\\n'" + quoted).c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[256];
  Args back;
  while (std::fgets(buf, sizeof buf, p)) {
    std::string w = buf;
    back.push_back(w.substr(0, w.size() - 1));
  }
  pclose(p);
  EXPECT_EQ(back, opt.args);
}

}  // namespace
}  // namespace shardlm::launcher
