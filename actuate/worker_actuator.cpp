#include "actuate/worker_actuator.h"

#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <sstream>

#include "actuate/state_store.h"
#include "bus/poller.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "config/relay_spec.h"
#include "journal/for_worker.h"
#include "process/decoder.h"
#include "process/reading_proto.h"

namespace mp::actuate {

namespace {

std::vector<RelaySpec> specs(const config::Config& c) {
  std::vector<RelaySpec> v;
  for (const auto& r : c.relays) v.push_back(config::to_relay_spec(r));
  return v;
}

std::unique_ptr<Output> make_output(const config::Relay& r, bool& async) {
  const auto& o = r.output;
  async = true;
  if (o.type == "command")
    return std::make_unique<CommandOutput>(o.on_command, o.off_command, o.timeout_s);
  if (o.type == "http") {
    HttpRequest on{o.on_url.empty() ? o.url : o.on_url,
                   o.on_method.empty() ? o.method : o.on_method, o.on_body, o.headers};
    HttpRequest off{o.off_url.empty() ? o.url : o.off_url,
                    o.off_method.empty() ? o.method : o.off_method, o.off_body, o.headers};
    return std::make_unique<HttpOutput>(on, off, o.timeout_s);
  }
  if (o.type == "gpiod") {
    auto g = std::make_unique<GpiodOutput>(o.chip, unsigned(o.line), o.active_low);
    std::string err;
    if (!g->open(err)) log::error("relay %s: %s", r.name.c_str(), err.c_str());
    async = false;  // a GPIO line switches in microseconds: no thread, no delay
    return g;
  }
  async = false;
  return std::make_unique<SimOutput>(r.name);
}

// "relay NAME on|off|auto [SECONDS]" -> reply text
std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  std::string x;
  while (in >> x) w.push_back(x);
  return w;
}

}  // namespace

Actuator::Actuator(Worker& w)
    : w_(w),
      journal_(journal::open_for(w.cfg(), "actuate")),
      engine_(config::to_site_spec(w.cfg()), specs(w.cfg())),
      state_file_(w.cfg().actuate.state_file) {
  // The time zone is general.timezone, set once by the worker harness before any thread
  // exists (bus/worker.cpp): local_time() only calls localtime_r (changing TZ per call would
  // race with commands spawned from other threads).
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  wall0_ = clock::wall_ns();
  mono0_ = clock::mono_ns();
  saver_ = std::thread(&Actuator::saver_loop, this);
  for (const auto& r : w.cfg().relays) {
    Out o;
    o.output = make_output(r, o.async);
    log::info("relay %s: %s, meter %s, on below %.0f W, off above %.0f W", r.name.c_str(),
              o.output->describe().c_str(), r.meter.c_str(), r.on_below_w, r.off_above_w);
    outs_.emplace(r.name, std::move(o));
  }
  EngineState st;
  std::string err;
  switch (load_state(state_file_, st, err)) {
    case LoadResult::ok:
      engine_.import_state(st);
      engine_.grace_after_restart(engine_now(), kSaveIntervalS);
      restored_ = true;
      log::info("relay state restored from %s", state_file_.c_str());
      break;
    case LoadResult::missing:
      break;
    case LoadResult::error:
      log::warn("relay state %s unreadable (%s): starting from failsafe", state_file_.c_str(),
                err.c_str());
      break;
  }
  try {
    ctl_ = std::make_unique<bus::ControlServer>(
        w.cfg().general.run_dir, "actuate",
        [this](const std::string& request) { return control_reply(request, engine_now()); });
  } catch (const std::exception& e) {
    log::error("%s (manual overrides unavailable)", e.what());
  }
}

Actuator::~Actuator() {
  {
    std::lock_guard<std::mutex> l(save_mu_);
    save_stop_ = true;
  }
  save_cv_.notify_one();
  if (saver_.joinable()) saver_.join();  // the last state is written before we exit
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

int64_t Actuator::engine_now() const { return wall0_ + (clock::mono_ns() - mono0_); }

void Actuator::save(bool clean) {
  // The write (two fsyncs; tens of ms on an SD card) happens on the saver thread, so the
  // next telegram is never kept waiting; the newest state wins.
  {
    std::lock_guard<std::mutex> l(save_mu_);
    to_save_ = engine_.export_state();
    to_save_.saved_ns = engine_now();
    to_save_.clean = clean;
    save_pending_ = true;
  }
  save_cv_.notify_one();
  dirty_ = false;
}

void Actuator::saver_loop() {
  // Bulk disk I/O: give way to the main loop (and its ZeroMQ I/O thread), which share a CPU
  // with this thread when the supervisor pins the real-time path (general.realtime_cpu).
  (void)!setpriority(PRIO_PROCESS, pid_t(syscall(SYS_gettid)), 10);
  std::unique_lock<std::mutex> l(save_mu_);
  while (true) {
    save_cv_.wait(l, [this] { return save_pending_ || save_stop_; });
    if (!save_pending_ && save_stop_) return;
    EngineState st = std::move(to_save_);
    save_pending_ = false;
    l.unlock();
    std::string err;
    if (!save_state(state_file_, st, err))
      log::warn("cannot save relay state to %s: %s", state_file_.c_str(), err.c_str());
    l.lock();
  }
}

void Actuator::finish(Out& o, const SwitchResult& r, int64_t now) {
  const Decision& d = o.decision;
  // A restore re-asserts what the engine already believes: it is not the engine's decision,
  // so it confirms none. When it fails the relay's real state is unknown.
  if (d.mode != "restore")
    engine_.confirm(d.relay, r.ok, now, r.uncertain);
  else if (!r.ok)
    engine_.forget_state(d.relay);
  meterpipe::Envelope env;
  auto* ev = env.mutable_relay();
  ev->set_relay(d.relay);
  ev->set_old_state(d.old_state);
  ev->set_new_state(r.ok ? d.new_state : d.old_state);
  ev->set_reason(d.reason);
  ev->set_mode(d.mode);
  ev->set_ok(r.ok);
  ev->set_error(r.error);
  ev->set_trigger_receive_time_ns(o.trigger_wall_ns);
  ev->set_trigger_receive_mono_ns(o.trigger_mono_ns);
  w_.pub().publish(bus::topic_relay(d.relay), env);
  if (journal_) journal_->append(env.SerializeAsString());  // queued: never waits for disk
  if (o.trigger_mono_ns)  // meter to decision: last byte at acquire -> event published
    w_.gauge("switch_latency_ms", double(clock::mono_ns() - o.trigger_mono_ns) / 1e6);
  if (r.ok) {
    if (d.old_state != d.new_state) w_.count("switches_" + d.relay);
    log::info("relay %s %s (%s): %s", d.relay.c_str(), d.new_state ? "on" : "off", d.mode.c_str(),
              d.reason.c_str());
  } else {
    w_.count("switch_failures_" + d.relay);
    if (d.mode == "restore")
      log::warn("relay %s: re-asserting the restored state (%s) failed: %s (state now unknown)",
                d.relay.c_str(), d.new_state ? "on" : "off", r.error.c_str());
    else
      log::warn("relay %s: switching %s failed: %s (will retry)", d.relay.c_str(),
                d.new_state ? "on" : "off", r.error.c_str());
  }
  last_reason_[d.relay] = d.reason;
  dirty_ = true;
  if (!changed_at_) changed_at_ = now;  // the engine may decide more: tick soon (next_tick)
}

void Actuator::apply(const std::vector<Decision>& ds, int64_t now) {
  for (const auto& d : ds) {
    auto it = outs_.find(d.relay);
    if (it == outs_.end()) continue;
    Out& o = it->second;
    if (o.pending.valid()) {  // one switch in flight per relay
      if (o.decision.mode == "restore") {
        o.queued = d;
        o.queued_wall_ns = trigger_wall_ns_;
        o.queued_mono_ns = trigger_mono_ns_;
      }
      continue;
    }
    o.decision = d;
    o.trigger_wall_ns = trigger_wall_ns_;
    o.trigger_mono_ns = trigger_mono_ns_;
    start(o, now);
  }
}

void Actuator::start(Out& o, int64_t now) {
  if (!o.async) {
    finish(o, o.output->set(o.decision.new_state), now);
    return;
  }
  Output* out = o.output.get();
  const bool on = o.decision.new_state;
  const int fd = wake_fd_;
  o.pending = std::async(std::launch::async, [out, on, fd] {
    SwitchResult r = out->set(on);
    const uint64_t one = 1;
    if (fd >= 0) (void)!::write(fd, &one, sizeof one);  // wake the main loop
    return r;
  });
}

void Actuator::collect(int64_t now) {
  for (auto& [name, o] : outs_) {
    if (o.pending.valid() &&
        o.pending.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      finish(o, o.pending.get(), now);
      if (o.queued) {  // the engine's decision that came during the restore
        o.decision = std::move(*o.queued);
        o.queued.reset();
        o.trigger_wall_ns = o.queued_wall_ns;
        o.trigger_mono_ns = o.queued_mono_ns;
        start(o, now);
      }
    }
  }
}

std::string Actuator::status_json(int64_t now) {
  std::string s = "{\"relays\":[";
  bool first = true;
  for (const auto& st : engine_.status(now)) {
    if (!first) s += ',';
    first = false;
    s += "{\"name\":" + json::quote(st.name) + ",\"on\":" + (st.on ? "true" : "false") +
         ",\"known\":" + (st.known ? "true" : "false") +
         ",\"doubt\":" + (st.doubt ? "true" : "false") + ",\"mode\":" + json::quote(st.mode) +
         ",\"override\":" + json::quote(to_string(st.override_mode)) +
         ",\"override_expires_ns\":" + std::to_string(st.override_expires_ns) +
         ",\"override_left_s\":" +
         std::to_string(
             st.override_expires_ns
                 ? std::max<int64_t>(0, (st.override_expires_ns - now + 999999999) / 1000000000)
                 : 0) +
         ",\"pending\":" + (st.pending ? "true" : "false") +
         ",\"failures\":" + std::to_string(st.failures) +
         ",\"switches_last_hour\":" + std::to_string(st.switches_last_hour) +
         ",\"last_reason\":" + json::quote(last_reason_[st.name]) + "}";
  }
  s += "]";
  if (auto p = engine_.projected_demand_w()) {
    s += ",\"projected_demand_w\":";
    json::append_number(s, *p);
  }
  s += "}";
  return s;
}

std::string Actuator::control_reply(const std::string& request, int64_t now) {
  auto wd = words(request);
  if (wd.size() == 1 && wd[0] == "status") return status_json(now);
  if ((wd.size() != 3 && wd.size() != 4) || wd[0] != "relay")
    return "{\"error\":\"usage: status | relay NAME on|off|auto [SECONDS]\"}";
  Override mode;
  double secs = wd.size() == 4 ? std::atof(wd[3].c_str()) : 0;
  if (!parse_override(wd[2], mode)) return "{\"error\":\"state must be on, off or auto\"}";
  if (!engine_.set_override(wd[1], mode, secs > 0 ? now + int64_t(secs * 1e9) : 0))
    return "{\"error\":" + json::quote("no relay named " + wd[1]) + "}";
  log::info("relay %s: manual override %s%s", wd[1].c_str(), wd[2].c_str(),
            secs > 0 ? (" for " + std::to_string(int64_t(secs)) + " s").c_str() : "");
  dirty_ = true;
  apply(engine_.step(now, local_time(clock::wall_ns(), "")), now);
  if (!changed_at_) changed_at_ = now;  // not a tick: the old grid goes on (next_tick)
  return "{\"ok\":true}";
}

// The engine's tick without data used to come every second after its last step; it now comes
// only at the first such second at or after something can change: the engine's next
// deadline (Engine::next_deadline), the next local minute when a relay has a time condition,
// or a confirm/override since the last step. The ticks left out are those that would have
// decided nothing and changed nothing (tests/unit/test_rules_deadline.cpp).
std::optional<int64_t> Actuator::next_tick(int64_t last_step) const {
  std::optional<int64_t> due;
  auto at = [&](int64_t t) {
    if (!due || t < *due) due = t;
  };
  if (changed_at_) at(*changed_at_);
  if (auto d = engine_.next_deadline(last_step)) at(*d);
  if (engine_.uses_local_time()) {
    // local_time() reads the wall clock: its next minute, in engine time
    const int64_t wall = clock::wall_ns(), now = engine_now();
    at(now + ((wall / 60000000000LL + 1) * 60000000000LL - wall));
  }
  if (!due) return std::nullopt;
  const int64_t k = std::max<int64_t>(1, (*due - last_step + kNsPerSec - 1) / kNsPerSec);
  return last_step + k * kNsPerSec;
}

int Actuator::run() {
  // Readings for the rules come from acquire's raw frames, decoded here with the same
  // decoders process uses (process/decoder.h), not from process's reading/ topic: every bus
  // hop costs two thread wake-ups in each process (ZeroMQ's I/O threads), and switching
  // should wait for one hop, not two. It also keeps switching going while process restarts.
  // Decode errors are only counted here; process logs them.
  std::set<std::string> meters;
  for (const auto& r : w_.cfg().relays) meters.insert(r.meter);
  std::vector<std::string> topics;
  for (const auto& m : meters) topics.push_back(bus::topic_raw(m));
  bus::Subscriber sub(w_.cfg().general.run_dir, {"acquire"}, topics);
  process::Decoders decoders(w_.cfg());
  for (const auto& e : decoders.setup_errors())
    log::error("%s (its relays stay failsafe)", e.c_str());
  if (restored_) {
    // The outputs may have lost their state meanwhile (a GPIO line is released when the
    // process ends, a Shelly reboots after a power cut): drive each to the restored state,
    // unless the engine decides otherwise at once (the failsafe after a long downtime):
    // then its decision drives the output, with no restore flapping it first.
    const int64_t now = engine_now();
    auto first = engine_.step(now, local_time(clock::wall_ns(), ""));
    std::vector<Decision> again;
    for (const auto& st : engine_.status(now)) {
      bool decided = false;
      for (const auto& d : first) decided = decided || d.relay == st.name;
      if (st.known && !decided)
        again.push_back(
            Decision{st.name, st.on, st.on, "restore", "state restored after a restart"});
    }
    apply(again, now);
    apply(first, now);
  }
  bus::Poller poller;
  poller.add(sub);
  if (ctl_) poller.add(*ctl_);
  if (wake_fd_ >= 0) poller.add_fd(wake_fd_);
  int64_t last_step = 0, last_save = clock::mono_ns();
  changed_at_ = 0;  // the first tick at once
  while (w_.running()) {
    // asleep until a frame, a request, a finished switch (wake_fd_), the engine's next tick
    // (next_tick), the periodic save or the heartbeat: nothing polls
    int64_t left_ms = w_.wait_ms();
    if (const auto tick = next_tick(last_step))
      left_ms = std::min(left_ms, (*tick - engine_now()) / 1000000 + 1);
    left_ms = std::min(
        left_ms, (last_save + int64_t(kSaveIntervalS * 1e9) - clock::mono_ns()) / 1000000 + 1);
    poller.wait(int(std::max<int64_t>(left_ms, 0)));
    uint64_t woken;
    if (wake_fd_ >= 0) (void)!::read(wake_fd_, &woken, sizeof woken);
    // Engine time runs on the monotonic clock, anchored to the wall clock at start: an NTP
    // step on a Pi without RTC must not make all data look stale (failsafe for nothing)
    // nor cut min-on/min-off short. Local-time conditions use the real wall clock.
    const int64_t now = engine_now();
    bus::Message m;
    while (sub.receive(m, 0)) {
      // a topic prefix also matches longer names (raw/home -> raw/home2)
      if (!m.env.has_raw() || !meters.count(m.env.raw().source())) continue;
      meterpipe::Reading pr;
      std::string error;
      const auto status = decoders.decode(m.env.raw(), pr, error);
      if (status == process::Status::error) w_.count("decode_errors");
      if (status != process::Status::reading) continue;
      // A frame held up somewhere (a stopped acquire resumed) may be old: switching on it
      // would act on the past. Readings more than 10 s old are counted and ignored.
      if (pr.receive_time_ns() && clock::wall_ns() - pr.receive_time_ns() > 10000000000LL) {
        w_.count("stale_readings_ignored");
        continue;
      }
      Reading r;
      from_proto(pr, r);
      trigger_wall_ns_ = pr.receive_time_ns();
      trigger_mono_ns_ = pr.receive_mono_ns();
      auto ds = engine_.step(now, local_time(clock::wall_ns(), ""), &r);
      last_step = now;
      changed_at_.reset();  // a switch these decisions finish is a change after the step
      apply(ds, now);
      trigger_wall_ns_ = trigger_mono_ns_ = 0;
      w_.count("readings");
    }
    if (ctl_) ctl_->serve_pending();
    collect(now);
    if (const auto tick = next_tick(last_step); tick && now >= *tick) {
      // a tick without data: staleness, expiries, retries
      auto ds = engine_.step(now, local_time(clock::wall_ns(), ""));
      last_step = now;
      changed_at_.reset();
      apply(ds, now);
    }
    const int64_t mono = clock::mono_ns();
    if (dirty_ || mono - last_save > int64_t(kSaveIntervalS * 1e9)) {
      save();
      last_save = mono;
    }
    w_.set_counter("bus_lost", sub.lost());
    for (const auto& st : engine_.status(now)) w_.gauge("relay_" + st.name, st.on ? 1 : 0);
    if (auto p = engine_.projected_demand_w()) w_.gauge("projected_demand_w", *p);
    journal::report(w_, journal_.get());
    w_.tick();
  }
  for (auto& [n, o] : outs_)
    if (o.pending.valid()) finish(o, o.pending.get(), engine_now());
  if (journal_) journal_->close();  // what is queued reaches the file
  save(true);
  return 0;
}

}  // namespace mp::actuate
