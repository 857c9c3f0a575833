// Building the mpirun / srun line of `shardlm launch` (see launch_line.h).
#include "launcher/launch_line.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <utility>

#include "core/error.h"

extern char** environ;

namespace shardlm::launcher {

using core::ConfigError;

// ConfigError has no file/line constructor (the message names the option).
template <class... A>
void require(bool ok, fmt::format_string<A...> f, A&&... a) {
  if (!ok) throw ConfigError(fmt::format(f, std::forward<A>(a)...));
}

// ---- parsing ------------------------------------------------------------------------

namespace {

// A positive integer, or -1 when `s` is not one ("2(x3)" reads as 2).
int leading_int(const std::string& s) {
  size_t i = 0;
  long v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9' && v < 1000000) v = v * 10 + (s[i++] - '0');
  return i == 0 ? -1 : static_cast<int>(v);
}

}  // namespace

std::vector<HostSlots> parse_hosts(const std::string& text) {
  std::vector<HostSlots> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
    HostSlots h;
    size_t colon = item.rfind(':');
    h.host = item.substr(0, colon);
    if (colon != std::string::npos) {
      std::string n = item.substr(colon + 1);
      h.slots = leading_int(n);
      require(h.slots > 0 && std::to_string(h.slots) == n,
              "--hosts: '{}' in '{}': expected host:slots with slots a positive integer", item,
              text);
    }
    require(!h.host.empty(), "--hosts: empty host name in '{}' (expected h1:2,h2:2)", text);
    out.push_back(h);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

void LaunchOptions::validate() const {
  require(ranks >= 0, "-n: {} ranks; expected a positive number", ranks);
  require(threads >= 0, "--threads: {}; expected a positive number", threads);
  require(launcher == "auto" || launcher == "mpirun" || launcher == "srun",
          "--launcher: '{}'; expected auto, mpirun or srun", launcher);
  require(!program.empty(), "--program: empty; expected an executable");
  require(!args.empty(),
          "nothing to run: give the subcommand after --, e.g. "
          "shardlm launch -n 2 -- train --config run.toml");
  for (const auto& m : mca) {
    auto eq = m.find('=');
    require(eq != std::string::npos && eq > 0, "--mca: '{}'; expected key=value", m);
  }
}

// ---- the machine ----------------------------------------------------------------------

namespace {

// Physical cores among the CPUs this process may run on: hyper-threads of one
// core count once, since two busy ranks on one core's threads only share it.
int physical_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
  }
  std::set<std::pair<std::string, std::string>> cores;
  int cpus = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    ++cpus;
    std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::string pkg, core;
    std::ifstream(dir + "physical_package_id") >> pkg;
    std::ifstream(dir + "core_id") >> core;
    if (pkg.empty() || core.empty()) return cpus > 0 ? CPU_COUNT(&set) : 1;  // no sysfs
    cores.emplace(pkg, core);
  }
  return std::max<int>(1, static_cast<int>(cores.size()));
}

bool looked_at(const std::string& name) {
  static const char* prefixes[] = {"SLURM_", "SHARDLM_", "NCCL_"};
  for (const char* p : prefixes)
    if (name.rfind(p, 0) == 0) return true;
  return name == "OMP_NUM_THREADS" || name == "CUDA_VISIBLE_DEVICES";
}

}  // namespace

LaunchSite LaunchSite::detect() {
  LaunchSite s;
  s.cores = physical_cores();
  s.root = geteuid() == 0;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    std::string name = kv.substr(0, eq);
    if (looked_at(name)) s.env[name] = kv.substr(eq + 1);
  }
  return s;
}

const std::string* LaunchSite::get(const std::string& name) const {
  auto it = env.find(name);
  return it == env.end() || it->second.empty() ? nullptr : &it->second;
}

// ---- the line ---------------------------------------------------------------------------

std::string shell_quote(const std::string& word) {
  static const std::string safe =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-";
  if (!word.empty() && word.find_first_not_of(safe) == std::string::npos) return word;
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string LaunchLine::str() const {
  std::string out;
  for (const auto& [k, v] : env) out += k + "=" + shell_quote(v) + " ";
  for (size_t i = 0; i < argv.size(); ++i) out += (i ? " " : "") + shell_quote(argv[i]);
  return out;
}

namespace {

// OMP_NUM_THREADS per rank: the option, the user's variable, SLURM's CPUs per
// task, else `cpus` shared among `local_ranks`.
int threads_per_rank(const LaunchOptions& opt, const LaunchSite& site, int cpus, int local_ranks) {
  if (opt.threads > 0) return opt.threads;
  if (const auto* omp = site.get("OMP_NUM_THREADS"); omp && leading_int(*omp) > 0)
    return leading_int(*omp);
  if (const auto* cpt = site.get("SLURM_CPUS_PER_TASK"); cpt && leading_int(*cpt) > 0)
    return leading_int(*cpt);
  return std::max(1, cpus / std::max(1, local_ranks));
}

std::pair<std::string, std::string> split_mca(const std::string& kv) {
  auto eq = kv.find('=');
  return {kv.substr(0, eq), kv.substr(eq + 1)};
}

LaunchLine build_srun(const LaunchOptions& opt, const LaunchSite& site) {
  require(opt.hosts.empty(),
          "--hosts is for mpirun; under SLURM the allocation decides where ranks run "
          "(use --launcher mpirun to bypass srun)");
  LaunchLine line;
  line.kind = "srun";
  // Tasks on this node and its CPUs, from the allocation's variables.
  int local = -1;
  for (const char* v : {"SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE"})
    if (const auto* s = site.get(v); s && local <= 0) local = leading_int(*s);
  int nodes = 1;
  if (const auto* s = site.get("SLURM_JOB_NUM_NODES")) nodes = std::max(1, leading_int(*s));
  if (local <= 0) {
    int tasks = opt.ranks;
    if (const auto* s = site.get("SLURM_NTASKS"); s && tasks == 0) tasks = leading_int(*s);
    local = std::max(1, (tasks + nodes - 1) / nodes);
  }
  int cpus = site.cores;
  if (const auto* s = site.get("SLURM_CPUS_ON_NODE"); s && leading_int(*s) > 0)
    cpus = leading_int(*s);
  line.threads = threads_per_rank(opt, site, cpus, local);

  // srun passes launch's environment to every task (--export=ALL by default).
  line.env["OMP_NUM_THREADS"] = std::to_string(line.threads);
  if (nodes > 1) {
    line.env["OMPI_MCA_pml"] = "ob1";
    line.env["OMPI_MCA_btl"] = "tcp,vader,self";
  }
  if (!opt.net.empty()) line.env["OMPI_MCA_btl_tcp_if_include"] = opt.net;
  for (const auto& m : opt.mca) {
    auto [k, v] = split_mca(m);
    line.env["OMPI_MCA_" + k] = v;
  }
  // A rank that stops after a checkpoint exits 75 (and a failing one aborts
  // the world itself): srun must not kill the others while they still save.
  line.argv = {"srun", "--mpi=pmix", "--kill-on-bad-exit=0"};
  if (opt.ranks > 0) line.argv.push_back("--ntasks=" + std::to_string(opt.ranks));
  line.argv.push_back(opt.program);
  line.argv.insert(line.argv.end(), opt.args.begin(), opt.args.end());
  return line;
}

LaunchLine build_mpirun(const LaunchOptions& opt, const LaunchSite& site) {
  LaunchLine line;
  line.kind = "mpirun";
  int total = 0, most = 0;
  bool uniform = true;
  for (const auto& h : opt.hosts) {
    total += h.slots;
    uniform = uniform && (most == 0 || h.slots == most);
    most = std::max(most, h.slots);
  }
  int n = opt.ranks > 0 ? opt.ranks : total;
  require(n > 0, "-n: how many ranks? (give -n N or --hosts h1:2,h2:2)");
  require(opt.hosts.empty() || n <= total,
          "-n {} but --hosts lists {} slots; list more slots or ask for fewer ranks", n, total);
  // Ranks on the busiest host; every host is taken to have this machine's cores.
  const int local = opt.hosts.empty() ? n : std::min(n, most);
  line.threads = threads_per_rank(opt, site, site.cores, local);

  auto& a = line.argv;
  a = {"mpirun", "-n", std::to_string(n)};
  if (site.root) a.push_back("--allow-run-as-root");
  if (!opt.hosts.empty()) {
    std::string list;
    for (const auto& h : opt.hosts)
      list += (list.empty() ? "" : ",") + h.host + ":" + std::to_string(h.slots);
    a.insert(a.end(), {"--host", list});
  }
  if (local > site.cores || line.threads * local > site.cores) {
    // More ranks (or threads) than cores: binding would pile ranks on one core.
    a.insert(a.end(), {"--map-by", "slot", "--bind-to", "none", "--oversubscribe"});
  } else {
    std::string pe = line.threads > 1 ? ":PE=" + std::to_string(line.threads) : "";
    bool ppr = opt.hosts.size() > 1 && uniform && n == total;
    a.insert(a.end(), {"--map-by", (ppr ? "ppr:" + std::to_string(most) + ":node" : "slot") + pe,
                       "--bind-to", "core"});
  }
  a.insert(a.end(), {"-x", "OMP_NUM_THREADS=" + std::to_string(line.threads)});
  for (const auto& [k, v] : site.env)
    if (k != "OMP_NUM_THREADS" && k.rfind("SLURM_", 0) != 0) a.insert(a.end(), {"-x", k});
  if (opt.hosts.size() > 1) {
    a.insert(a.end(), {"--mca", "pml", "ob1", "--mca", "btl", "tcp,vader,self"});
  }
  if (!opt.net.empty()) {
    a.insert(a.end(), {"--mca", "btl_tcp_if_include", opt.net});
    a.insert(a.end(), {"--mca", "oob_tcp_if_include", opt.net});
  }
  for (const auto& m : opt.mca) {
    auto [k, v] = split_mca(m);
    a.insert(a.end(), {"--mca", k, v});
  }
  a.push_back(opt.program);
  a.insert(a.end(), opt.args.begin(), opt.args.end());
  return line;
}

}  // namespace

LaunchLine build_launch(const LaunchOptions& opt, const LaunchSite& site) {
  opt.validate();
  // --hosts names machines by hand: that is mpirun's job even inside an allocation.
  bool srun = opt.launcher == "srun" ||
              (opt.launcher == "auto" && opt.hosts.empty() && site.get("SLURM_JOB_ID") != nullptr);
  return srun ? build_srun(opt, site) : build_mpirun(opt, site);
}

}  // namespace shardlm::launcher
