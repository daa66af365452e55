#include "supervisor/supervisor.h"

#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>

#include "bus/bus.h"
#include "bus/control.h"
#include "bus/poller.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "supervisor/notify.h"

namespace mp::supervisor {

double Backoff::next(double ran_s) {
  if (ran_s >= stable_s) failures = 0;
  double d = initial_s * std::pow(2.0, failures);
  if (d > cap_s)
    d = cap_s;
  else
    ++failures;
  return d;
}

CpuPlan plan_cpus(const std::vector<int>& allowed, int64_t realtime_cpu) {
  CpuPlan p;
  if (realtime_cpu == -1 || allowed.empty()) return p;
  int rt;
  if (realtime_cpu == config::General::kRealtimeCpuAuto) {
    if (allowed.size() < 2) return p;  // one CPU: nothing to separate
    rt = allowed.back();
  } else {
    rt = int(realtime_cpu);
    if (std::find(allowed.begin(), allowed.end(), rt) == allowed.end()) {
      p.warning = "general.realtime_cpu = " + std::to_string(rt) +
                  " is not a CPU this supervisor may use (" + cpu_list(allowed) +
                  "): workers are not pinned";
      return p;
    }
  }
  p.realtime = {rt};
  for (int c : allowed)
    if (c != rt) p.others.push_back(c);
  return p;
}

bool is_realtime_worker(const std::string& name) { return name == "acquire" || name == "actuate"; }

std::string cpu_list(const std::vector<int>& cpus) {
  std::string s;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!s.empty()) s += ',';
    s += std::to_string(cpus[i]);
    if (j > i) s += (j == i + 1 ? "," : "-") + std::to_string(cpus[j]);
    i = j + 1;
  }
  return s;
}

std::string self_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  std::string p(buf);
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

namespace {

int g_sigpipe[2] = {-1, -1};

void on_signal(int sig) {
  int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  (void)!write(g_sigpipe[1], &b, 1);
  errno = saved;
}

enum class State { stopped, running, backoff, stopping };
const char* state_name(State s) {
  switch (s) {
    case State::stopped:
      return "stopped";
    case State::running:
      return "running";
    case State::backoff:
      return "backoff";
    case State::stopping:
      return "stopping";
  }
  return "?";
}

struct Child {
  std::string name;
  std::string path;
  State state = State::stopped;
  pid_t pid = -1;
  int out_fd = -1;  // read end of the child's stderr/stdout
  std::string partial;
  int64_t started_mono = 0;
  int64_t last_health_mono = 0;  // 0 = none from this pid yet
  int64_t restart_at_mono = 0;
  int restarts = 0;
  std::vector<int> cpus;  // affinity given at start (empty = not pinned)
  Backoff backoff;
  std::string last_exit;
  meterpipe::Health health;
};

bool mkdir_p(const std::string& path, mode_t mode, std::string& err) {
  std::string cur;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    cur = path.substr(0, j);
    if (!cur.empty() && mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
      err = "cannot create " + cur + ": " + std::strerror(errno);
      return false;
    }
    i = j + 1;
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    err = "cannot create " + path + ": not a directory";
    return false;
  }
  if (access(path.c_str(), W_OK) != 0) {
    err = "cannot write to " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int s = WTERMSIG(status);
    return std::string("killed by signal ") + std::to_string(s) + " (" + strsignal(s) + ")";
  }
  return "status " + std::to_string(status);
}

class Supervisor {
 public:
  Supervisor(const config::Config& cfg, const Options& opt) : cfg_(cfg), opt_(opt) {}
  int run();

 private:
  bool spawn(Child& c);
  void forward(Child& c, bool flush_all);
  void reap();
  void handle_health(const bus::Message& m);
  std::string control_reply(const std::string& request);
  std::string status_json();
  void stop_all();
  // the phases of run()
  bool prepare_dirs();
  bool take_lock();
  bool plan_children();
  void pin_cpus();
  bool install_signals();
  bool open_bus();
  bool wait_and_dispatch(bus::Poller& poller);  // false once a stop signal came
  int64_t next_deadline_mono() const;
  bool awaiting_first_heartbeat() const;
  void watch_children(bool stopping);
  std::vector<notify::WorkerView> worker_views() const;

  const config::Config& cfg_;
  Options opt_;
  std::vector<Child> children_;
  std::unique_ptr<bus::Subscriber> health_;
  std::unique_ptr<bus::ControlServer> ctl_;
  int64_t start_mono_ = clock::mono_ns();
  pid_t self_ = getpid();
  int lock_fd_ = -1;
  bool journal_ = std::getenv("JOURNAL_STREAM") != nullptr;
  notify::Notifier notify_;
};

std::vector<notify::WorkerView> Supervisor::worker_views() const {
  std::vector<notify::WorkerView> v;
  for (const auto& c : children_)
    v.push_back({c.name, c.state == State::running && c.last_health_mono != 0,
                 c.state == State::backoff, c.restarts});
  return v;
}

bool Supervisor::spawn(Child& c) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    log::error("%s: cannot create pipe: %s", c.name.c_str(), std::strerror(errno));
    return false;
  }
  pid_t pid = fork();
  if (pid < 0) {
    log::error("%s: fork failed: %s", c.name.c_str(), std::strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return false;
  }
  if (pid == 0) {
    // child: die with the supervisor, even on kill -9 of it
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != self_) _exit(127);
    setpgid(0, 0);  // own process group: Ctrl-C on the terminal reaches the supervisor only
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (!c.cpus.empty()) {  // before exec: every thread of the worker inherits it
      cpu_set_t set;
      CPU_ZERO(&set);
      for (int cpu : c.cpus) CPU_SET(cpu, &set);
      if (sched_setaffinity(0, sizeof set, &set) != 0)
        dprintf(STDERR_FILENO, "warning: cannot set CPU affinity: %s\n", std::strerror(errno));
    }
    setenv("MP_SUPERVISED", "1", 1);
    notify::forget_in_child();
    std::string arg0 = "meterpipe-" + c.name;
    const char* argv[] = {arg0.c_str(), "--config", opt_.config_file.c_str(), nullptr};
    execv(c.path.c_str(), const_cast<char* const*>(argv));
    dprintf(STDERR_FILENO, "error: cannot execute %s: %s\n", c.path.c_str(), std::strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);  // also here: no race with a kill(-pid) right after the fork
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  c.out_fd = fds[0];
  c.pid = pid;
  c.state = State::running;
  c.started_mono = clock::mono_ns();
  c.last_health_mono = 0;
  c.health.Clear();
  log::info("started %s (pid %d)", c.name.c_str(), int(pid));
  return true;
}

void Supervisor::forward(Child& c, bool flush_all) {
  if (c.out_fd < 0) return;
  char buf[4096];
  while (true) {
    ssize_t n = read(c.out_fd, buf, sizeof buf);
    if (n > 0) {
      c.partial.append(buf, size_t(n));
      continue;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      close(c.out_fd);
      c.out_fd = -1;
      flush_all = true;
    }
    break;
  }
  size_t start = 0;
  while (true) {
    size_t nl = c.partial.find('\n', start);
    bool take = nl != std::string::npos;
    if (!take && c.partial.size() - start > 4096) nl = start + 4096, take = true;
    if (!take) break;
    std::string_view line(c.partial.data() + start, nl - start);
    // worker lines look like "<level>: <message>"; keep them as they are, name first, and
    // under systemd give journald the level as a "<N>" prefix
    std::string out;
    if (journal_) {
      if (line.rfind("error:", 0) == 0)
        out = "<3>";
      else if (line.rfind("warn:", 0) == 0)
        out = "<4>";
      else if (line.rfind("debug:", 0) == 0)
        out = "<7>";
      else
        out = "<6>";
    }
    out += c.name + ": ";
    out.append(line);
    out += '\n';
    (void)!::write(STDERR_FILENO, out.data(), out.size());
    start = nl + (nl < c.partial.size() && c.partial[nl] == '\n' ? 1 : 0);
  }
  c.partial.erase(0, start);
  if (flush_all && !c.partial.empty()) {
    std::string out = c.name + ": " + c.partial + "\n";
    (void)!::write(STDERR_FILENO, out.data(), out.size());
    c.partial.clear();
  }
}

void Supervisor::reap() {
  while (true) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (auto& c : children_) {
      if (c.pid != pid) continue;
      forward(c, true);
      const double ran = double(clock::mono_ns() - c.started_mono) / 1e9;
      c.last_exit = describe_status(status);
      c.pid = -1;
      if (c.state == State::stopping) {
        c.state = State::stopped;
        log::info("%s stopped (%s)", c.name.c_str(), c.last_exit.c_str());
        break;
      }
      const double delay = c.backoff.next(ran);
      c.state = State::backoff;
      c.restart_at_mono = clock::mono_ns() + int64_t(delay * 1e9);
      ++c.restarts;
      log::warn("%s (pid %d) ended after %.1f s: %s; restart %d in %.1f s", c.name.c_str(),
                int(pid), ran, c.last_exit.c_str(), c.restarts, delay);
      break;
    }
  }
}

void Supervisor::handle_health(const bus::Message& m) {
  if (!m.env.has_health()) return;
  const auto& h = m.env.health();
  for (auto& c : children_) {
    if (c.name == h.worker() && c.pid == h.pid()) {
      // taken late in steady state (run()): its age counts from when it was sent
      const int64_t now = clock::mono_ns();
      c.last_health_mono =
          h.send_mono_ns() > 0 ? std::clamp<int64_t>(h.send_mono_ns(), c.started_mono, now) : now;
      c.health = h;
    }
  }
}

std::string Supervisor::status_json() {
  const int64_t now = clock::mono_ns();
  std::string s = "{\"supervisor_pid\":" + std::to_string(getpid()) + ",\"uptime_s\":";
  json::append_number(s, double(now - start_mono_) / 1e9);
  s += ",\"config\":";
  json::append_string(s, opt_.config_file);
  s += ",\"workers\":[";
  bool first = true;
  for (const auto& c : children_) {
    if (!first) s += ',';
    first = false;
    s += "{\"name\":";
    json::append_string(s, c.name);
    // no pid (null) for a worker that is not running: a script must never kill() a -1
    s += ",\"pid\":" + (c.pid > 0 ? std::to_string(c.pid) : std::string("null")) + ",\"state\":";
    json::append_string(s, state_name(c.state));
    s += ",\"restarts\":" + std::to_string(c.restarts) + ",\"cpus\":";
    json::append_string(s, cpu_list(c.cpus));
    s += ",\"uptime_s\":";
    json::append_number(s, c.state == State::running ? double(now - c.started_mono) / 1e9 : 0);
    s += ",\"last_health_age_s\":";
    if (c.last_health_mono)
      json::append_number(s, double(now - c.last_health_mono) / 1e9);
    else
      s += "null";
    s += ",\"last_exit\":";
    json::append_string(s, c.last_exit);
    s += ",\"counters\":{";
    bool f2 = true;
    std::map<std::string, uint64_t> sorted(c.health.counters().begin(), c.health.counters().end());
    for (const auto& [k, v] : sorted) {
      if (!f2) s += ',';
      f2 = false;
      json::append_string(s, k);
      s += ":" + std::to_string(v);
    }
    s += "},\"gauges\":{";
    f2 = true;
    std::map<std::string, double> gs(c.health.gauges().begin(), c.health.gauges().end());
    for (const auto& [k, v] : gs) {
      if (!f2) s += ',';
      f2 = false;
      json::append_string(s, k);
      s += ':';
      json::append_number(s, v);
    }
    s += "},\"info\":{";
    f2 = true;
    std::map<std::string, std::string> is(c.health.info().begin(), c.health.info().end());
    for (const auto& [k, v] : is) {
      if (!f2) s += ',';
      f2 = false;
      json::append_string(s, k);
      s += ':';
      json::append_string(s, v);
    }
    s += "}}";
  }
  s += "]}";
  return s;
}

std::string Supervisor::control_reply(const std::string& request) {
  if (request == "status") return status_json();
  return "{\"error\":\"unknown command\"}";
}

void Supervisor::stop_all() {
  // In pipeline order (acquire, process, actuate, upload, serve): each worker gets up to
  // 1 s to finish before the next is asked, so what acquire still sent is decoded and what
  // process still published reaches upload. Everything is gone within 5 s.
  const int64_t deadline = clock::mono_ns() + 5000000000LL;
  for (auto& c : children_) {
    if (c.pid <= 0) {
      c.state = State::stopped;
      continue;
    }
    kill(-c.pid, SIGTERM);  // the whole group: commands a worker started go too
    c.state = State::stopping;
    const int64_t step_end = std::min<int64_t>(deadline, clock::mono_ns() + 1000000000LL);
    while (c.pid > 0 && clock::mono_ns() < step_end) {
      reap();
      for (auto& o : children_) forward(o, false);
      if (c.pid > 0) usleep(10000);
    }
  }
  while (clock::mono_ns() < deadline) {
    reap();
    bool any = false;
    for (auto& c : children_) {
      forward(c, false);
      if (c.pid > 0) any = true;
    }
    if (!any) return;
    usleep(20000);
  }
  for (auto& c : children_) {
    if (c.pid > 0) {
      log::warn("%s (pid %d) did not stop within 5 s: SIGKILL", c.name.c_str(), int(c.pid));
      kill(-c.pid, SIGKILL);
    }
  }
  for (int i = 0; i < 50; ++i) {
    reap();
    bool any = false;
    for (auto& c : children_) any |= c.pid > 0;
    if (!any) break;
    usleep(20000);
  }
}

bool Supervisor::prepare_dirs() {
  std::string err;
  if (!mkdir_p(cfg_.general.run_dir, 0750, err)) {
    log::error("run_dir: %s", err.c_str());
    return false;
  }
  chmod(cfg_.general.run_dir.c_str(), 0750);
  // sockets and state files usable by the group (meterpipe status/tap/relay for its members)
  umask(0007);
  if (!mkdir_p(cfg_.general.state_dir, 0750, err)) {
    log::error("state_dir: %s", err.c_str());
    return false;
  }
  return true;
}

// One supervisor per run_dir: ZeroMQ would silently take over the sockets of a running one.
bool Supervisor::take_lock() {
  const std::string lock_path = cfg_.general.run_dir + "/supervisor.lock";
  lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (lock_fd_ < 0) {
    log::error("cannot open %s: %s", lock_path.c_str(), std::strerror(errno));
    return false;
  }
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    log::error("another meterpipe supervisor is running with run_dir %s (%s is locked)",
               cfg_.general.run_dir.c_str(), lock_path.c_str());
    return false;
  }
  return true;
}

bool Supervisor::plan_children() {
  for (const auto& n : cfg_.workers()) {
    Child c;
    c.name = n;
    c.path = opt_.bin_dir + "/meterpipe-" + n;
    if (access(c.path.c_str(), X_OK) != 0) {
      log::error("worker binary %s: %s", c.path.c_str(), std::strerror(errno));
      return false;
    }
    children_.push_back(std::move(c));
  }
  return true;
}

void Supervisor::pin_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> allowed;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int i = 0; i < CPU_SETSIZE; ++i)
      if (CPU_ISSET(i, &set)) allowed.push_back(i);
  const CpuPlan plan = plan_cpus(allowed, cfg_.general.realtime_cpu);
  if (!plan.warning.empty()) log::warn("%s", plan.warning.c_str());
  std::string rt_names;
  for (auto& c : children_) {
    c.cpus = is_realtime_worker(c.name) ? plan.realtime : plan.others;
    if (is_realtime_worker(c.name)) rt_names += (rt_names.empty() ? "" : ", ") + c.name;
  }
  if (!plan.realtime.empty())
    log::info("CPU %s: %s; %s %s: the other workers (general.realtime_cpu)",
              cpu_list(plan.realtime).c_str(), rt_names.c_str(),
              plan.others.size() == 1 ? "CPU" : "CPUs",
              plan.others.empty() ? "any" : cpu_list(plan.others).c_str());
}

bool Supervisor::install_signals() {
  if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    log::error("cannot create signal pipe: %s", std::strerror(errno));
    return false;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  sigaction(SIGCHLD, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return true;
}

bool Supervisor::open_bus() {
  try {
    ctl_ = std::make_unique<bus::ControlServer>(
        cfg_.general.run_dir, "supervisor",
        [this](const std::string& request) { return control_reply(request); });
  } catch (const std::exception& e) {
    log::error("%s (is another supervisor running?)", e.what());
    return false;
  }
  health_ = std::make_unique<bus::Subscriber>(cfg_.general.run_dir, cfg_.workers(),
                                              std::vector<std::string>{"health/"});
  return true;
}

bool Supervisor::wait_and_dispatch(bus::Poller& poller) {
  poller.clear_fds();
  poller.add_fd(g_sigpipe[0]);
  for (auto& c : children_)
    if (c.out_fd >= 0) poller.add_fd(c.out_fd);
  // asleep until something happens or the next deadline of watch_children/notify_
  const int64_t left_ms = (next_deadline_mono() - clock::mono_ns()) / 1000000 + 1;
  poller.wait(int(std::clamp<int64_t>(left_ms, 0, 60000)));
  bool stop = false;
  unsigned char sig;
  while (read(g_sigpipe[0], &sig, 1) == 1) {
    if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
      log::info("received %s: stopping workers", strsignal(sig));
      stop = true;
    }
  }
  bus::Message m;
  while (health_->receive(m, 0)) handle_health(m);
  ctl_->serve_pending();
  for (auto& c : children_) forward(c, false);
  reap();
  return !stop;
}

// The earliest moment watch_children() or notify_ has something to do: a restart after its
// backoff, a watchdog that runs out (heartbeats move it), a systemd notification.
int64_t Supervisor::next_deadline_mono() const {
  const int64_t watchdog_ns = int64_t(cfg_.general.watchdog_s * 1e9);
  int64_t next = notify_.next_due_mono();
  for (const auto& c : children_) {
    if (c.state == State::backoff) next = std::min(next, c.restart_at_mono);
    if (c.state != State::running || c.pid <= 0) continue;
    const int64_t since = c.last_health_mono ? c.last_health_mono : c.started_mono + 2000000000LL;
    // a little late, so that the workers' heartbeats of one round are taken in one wake-up
    const int64_t slack = std::min<int64_t>(250000000LL, watchdog_ns / 10);
    next = std::min(next, since + watchdog_ns + slack);
  }
  return next;
}

bool Supervisor::awaiting_first_heartbeat() const {
  for (const auto& c : children_)
    if (c.state == State::running && c.pid > 0 && c.last_health_mono == 0) return true;
  return false;
}

// Restarts what is due after its backoff, kills what stopped heartbeating.
void Supervisor::watch_children(bool stopping) {
  const int64_t watchdog_ns = int64_t(cfg_.general.watchdog_s * 1e9);
  const int64_t now = clock::mono_ns();
  for (auto& c : children_) {
    if (c.state == State::backoff && now >= c.restart_at_mono && !stopping) spawn(c);
    if (c.state != State::running || c.pid <= 0) continue;
    // a fresh worker gets 2 s more for its first heartbeat (its subscriber has to
    // connect before anything arrives)
    const int64_t since = c.last_health_mono ? c.last_health_mono : c.started_mono + 2000000000LL;
    if (now - since > watchdog_ns) {
      log::warn("%s (pid %d): no heartbeat for %.1f s: killing it", c.name.c_str(), int(c.pid),
                double(now - since) / 1e9);
      kill(-c.pid, SIGKILL);
      c.last_health_mono = now;  // one kill per period
    }
  }
}

int Supervisor::run() {
  mallopt(M_ARENA_MAX, 1);  // before the bus's threads: one arena, as in every worker
  if (!prepare_dirs() || !take_lock() || !plan_children()) return 1;
  pin_cpus();
  if (!install_signals() || !open_bus()) return 1;
  log::info("meterpipe supervisor (pid %d): config %s, run_dir %s, workers: %zu", int(getpid()),
            opt_.config_file.c_str(), cfg_.general.run_dir.c_str(), children_.size());
  for (auto& c : children_) spawn(c);
  // Heartbeats wake the supervisor only while a worker's first one is awaited; afterwards
  // they wait in the socket until a watchdog deadline or a request (wait_and_dispatch takes
  // them first) and count from when they were sent (docs/ARCHITECTURE.md, "Threading").
  bus::Poller with_health, quiet;
  with_health.add(*health_);
  with_health.add(*ctl_);
  quiet.add(*ctl_);
  bool stopping = false;
  while (!stopping) {
    stopping = !wait_and_dispatch(awaiting_first_heartbeat() ? with_health : quiet);
    watch_children(stopping);
    notify_.tick(worker_views(), clock::mono_ns());
  }
  notify_.stopping();
  stop_all();
  log::info("stopped");
  return 0;
}

}  // namespace

int run(const config::Config& cfg, const Options& opt) {
  Supervisor s(cfg, opt);
  return s.run();
}

}  // namespace mp::supervisor
