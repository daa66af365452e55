#include "acquire/worker_runners.h"

#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "acquire/dsmr_framer.h"
#include "acquire/dsmr_sim.h"
#include "acquire/mbus_poll.h"
#include "acquire/modbus_poll.h"
#include "acquire/serial_source.h"
#include "acquire/tcp_source.h"
#include "common/clock.h"
#include "common/log.h"
#include "journal/journal.h"
#include "process/dlms.h"

namespace mp::acquire {

namespace {

journal::Writer* g_journal = nullptr;

// Publishes one frame as raw/<source>. `fill` sets protocol-specific fields (Modbus).
template <class Fill = void (*)(meterpipe::RawFrame*)>
void publish_raw(Worker& w, const std::string& source, const std::string& protocol,
                 std::string&& bytes, int64_t wall_ns, int64_t mono_ns, bool last_of_poll,
                 Fill fill = [](meterpipe::RawFrame*) {}) {
  meterpipe::Envelope env;
  auto* raw = env.mutable_raw();
  raw->set_source(source);
  raw->set_protocol(protocol);
  raw->set_data(std::move(bytes));
  raw->set_receive_time_ns(wall_ns);
  raw->set_receive_mono_ns(mono_ns);
  raw->set_clock_synced(clock::synced());
  raw->set_last_of_poll(last_of_poll);
  fill(raw);
  w.pub().publish(bus::topic_raw(source), env);
  if (g_journal) g_journal->append(env.SerializeAsString());  // queued: never waits for disk
  w.count("frames_" + source);
}

void publish_frame(Worker& w, const config::Meter& m, const std::string& protocol,
                   std::string&& bytes, int64_t wall_ns, int64_t mono_ns) {
  publish_raw(w, m.name, protocol, std::move(bytes), wall_ns, mono_ns, true);
}

// Serial settings of a meter: its preset (or the protocol's default), then each field set.
SerialSettings serial_settings(const config::Meter& m, const char* default_preset) {
  SerialSettings s;
  s.device = m.device;
  apply_preset(m.preset.empty() ? default_preset : m.preset, s);
  if (m.baud) s.baud = int(m.baud);
  if (m.data_bits) s.data_bits = int(m.data_bits);
  if (m.stop_bits) s.stop_bits = int(m.stop_bits);
  if (m.parity == "none") s.parity = Parity::none;
  if (m.parity == "even") s.parity = Parity::even;
  if (m.parity == "odd") s.parity = Parity::odd;
  return s;
}

// Serial or TCP stream of telegrams (plain DSMR, or DLMS-encrypted when key_file is set).
class StreamRunner : public Runner {
 public:
  StreamRunner(Worker& w, const config::Meter& m, std::unique_ptr<ByteSource> src)
      : w_(w), m_(m), src_(std::move(src)), encrypted_(!m.key_file.empty()) {}

  void run(int slot) override {
    log::info("meter %s: reading %s%s", m_.name.c_str(), src_->describe().c_str(),
              encrypted_ ? " (encrypted P1)" : "");
    uint8_t buf[4096];
    std::string frame;
    while (w_.running()) {
      const size_t n = src_->read(buf, sizeof buf, 250);
      w_.progress(slot);
      // After a loss of the device or connection, a telegram in progress is cut: start
      // afresh so its first half is not glued to the next telegram.
      const uint64_t outages = src_->counters().outages;
      if (outages != outages_seen_) {
        outages_seen_ = outages;
        framer_.reset();
        splitter_.reset();
      }
      if (n == 0) continue;
      const int64_t wall = clock::wall_ns(), mono = clock::mono_ns();
      if (encrypted_) {
        splitter_.feed(buf, n);
        while (splitter_.pop(frame)) publish_frame(w_, m_, "dsmr-dlms", std::move(frame), wall, mono);
      } else {
        framer_.feed(buf, n);
        while (framer_.pop(frame)) publish_frame(w_, m_, "dsmr", std::move(frame), wall, mono);
      }
      const auto& c = framer_.counters();
      w_.set_counter("discarded_bytes_" + m_.name,
                     c.discarded_bytes + splitter_.counters().discarded_bytes);
      w_.set_counter("truncated_" + m_.name, c.truncated);
      w_.set_counter("oversize_" + m_.name, c.oversize);
      w_.set_counter("reconnects_" + m_.name, src_->counters().reconnects);
    }
  }

 private:
  Worker& w_;
  const config::Meter& m_;
  std::unique_ptr<ByteSource> src_;
  bool encrypted_;
  dsmr::Framer framer_;
  dlms::FrameSplitter splitter_;
  uint64_t outages_seen_ = 0;
};

// Sleeps until `mono_deadline` in short steps, reporting progress; false when stopping.
bool sleep_until(Worker& w, int slot, int64_t mono_deadline) {
  while (w.running()) {
    const int64_t left = mono_deadline - clock::mono_ns();
    if (left <= 0) return true;
    usleep(unsigned(std::min<int64_t>(left / 1000, 200000)));
    w.progress(slot);
  }
  return false;
}

// Replays the telegrams of a file once, rate_hz per second, then idles.
class FileRunner : public Runner {
 public:
  FileRunner(Worker& w, const config::Meter& m) : w_(w), m_(m) {}
  void run(int slot) override {
    std::ifstream in(m_.file, std::ios::binary);
    if (!in) {
      log::error("meter %s: cannot read file %s", m_.name.c_str(), m_.file.c_str());
    } else {
      std::ostringstream ss;
      ss << in.rdbuf();
      const std::string bytes = ss.str();
      dsmr::Framer framer;
      const int64_t period = int64_t(1e9 / m_.rate_hz);
      int64_t next = clock::mono_ns();
      size_t sent = 0;
      for (size_t off = 0; off < bytes.size() && w_.running(); off += 512) {
        framer.feed(reinterpret_cast<const uint8_t*>(bytes.data()) + off,
                    std::min<size_t>(512, bytes.size() - off));
        std::string t;
        while (framer.pop(t)) {
          if (!sleep_until(w_, slot, next)) return;
          next += period;
          publish_frame(w_, m_, "dsmr", std::move(t), clock::wall_ns(), clock::mono_ns());
          ++sent;
        }
      }
      log::info("meter %s: replayed %zu telegrams from %s", m_.name.c_str(), sent,
                m_.file.c_str());
    }
    while (w_.running()) sleep_until(w_, slot, clock::mono_ns() + 500000000);
  }

 private:
  Worker& w_;
  const config::Meter& m_;
};

// A simulated DSMR 5 meter: rate_hz telegrams per second; simulated time runs `speed`
// times faster than real time, starting now.
class SimRunner : public Runner {
 public:
  SimRunner(Worker& w, const config::Meter& m) : w_(w), m_(m) {}
  void run(int slot) override {
    dsmr::SimState state;
    state.seed = uint64_t(m_.seed);
    const int64_t wall0 = clock::wall_ns(), mono0 = clock::mono_ns();
    const int64_t period = int64_t(1e9 / m_.rate_hz);
    log::info("meter %s: simulated DSMR 5 meter, %.3g telegram/s, time x%.3g", m_.name.c_str(),
              m_.rate_hz, m_.speed);
    for (int64_t k = 1; w_.running(); ++k) {
      if (!sleep_until(w_, slot, mono0 + k * period)) break;
      const int64_t mono = clock::mono_ns();
      const int64_t sim_time = wall0 + int64_t(double(mono - mono0) * m_.speed);
      std::string t = dsmr::make_telegram(sim_time, state);
      publish_frame(w_, m_, "dsmr", std::move(t), clock::wall_ns(), mono);
    }
  }

 private:
  Worker& w_;
  const config::Meter& m_;
};

// Several Modbus devices (meters) on one bus (a TCP gateway/inverter or an RS485 line).
class ModbusRunner : public Runner {
 public:
  ModbusRunner(Worker& w, std::vector<const config::Meter*> meters)
      : w_(w), meters_(std::move(meters)) {}
  void run(int slot) override {
    const config::Meter& first = *meters_.front();
    modbus::BusConfig bc;
    if (first.source == "tcp") {
      bc.kind = modbus::BusConfig::Kind::tcp;
      bc.host = first.host;
      bc.port = int(first.port);
    } else {
      bc.kind = modbus::BusConfig::Kind::rtu;
      bc.device = first.device;
      bc.baud = first.baud ? int(first.baud) : 9600;
      bc.parity = first.parity == "even" ? 'E' : first.parity == "odd" ? 'O' : 'N';
      bc.data_bits = first.data_bits ? int(first.data_bits) : 8;
      bc.stop_bits = first.stop_bits ? int(first.stop_bits) : 1;
    }
    bc.response_timeout_ms = int(first.timeout_ms);
    modbus::Bus bus(bc);
    for (const auto* m : meters_) {
      modbus::DeviceConfig dc;
      dc.name = m->name;
      dc.unit_id = int(m->unit_id);
      dc.type = m->protocol == "sunspec" ? "sunspec" : m->type;
      dc.interval_ms = int(m->interval_ms);
      dc.sunspec_part = m->sunspec_part == "inverter" ? modbus::SunspecPart::inverter
                        : m->sunspec_part == "meter"  ? modbus::SunspecPart::meter
                                                      : modbus::SunspecPart::automatic;
      dc.sunspec_index = int(m->sunspec_index);
      std::string err;
      if (!bus.add_device(dc, &err)) log::error("meter %s: %s", m->name.c_str(), err.c_str());
      else
        log::info("meter %s: modbus %s unit %d (%s) every %lld ms", m->name.c_str(),
                  bc.kind == modbus::BusConfig::Kind::tcp
                      ? (bc.host + ":" + std::to_string(bc.port)).c_str()
                      : bc.device.c_str(),
                  dc.unit_id, dc.type.c_str(), (long long)m->interval_ms);
    }
    bus.set_progress([&] { w_.progress(slot); });
    auto sink = [&](const modbus::RawBlock& b) {
      w_.progress(slot);
      publish_raw(w_, b.device, "modbus",
                  std::string(reinterpret_cast<const char*>(b.bytes.data()), b.bytes.size()),
                  b.time_ns, clock::mono_ns(), b.last, [&](meterpipe::RawFrame* raw) {
                    raw->set_unit_id(uint32_t(b.unit_id));
                    raw->set_function_code(b.fc);
                    raw->set_start_address(b.start);
                    raw->set_device_type(b.type);
                  });
    };
    while (w_.running()) {
      const int64_t next = bus.poll_due(clock::mono_ns(), sink);
      w_.progress(slot);
      for (const auto& st : bus.status()) {
        w_.set_counter("requests_" + st.name, st.requests);
        w_.set_counter("errors_" + st.name, st.errors);
        w_.gauge("request_rate_per_min_" + st.name, st.request_rate_per_min);
        w_.gauge("error_rate_per_min_" + st.name, st.error_rate_per_min);
        w_.info("state_" + st.name, st.state == modbus::DeviceState::ok ? "ok" : "unavailable");
      }
      sleep_until(w_, slot, std::min(next, clock::mono_ns() + 200000000));
    }
  }

 private:
  Worker& w_;
  std::vector<const config::Meter*> meters_;
};

// M-Bus meters on one serial line, polled in turn.
class MbusRunner : public Runner {
 public:
  MbusRunner(Worker& w, std::vector<const config::Meter*> meters)
      : w_(w), meters_(std::move(meters)) {}
  void run(int slot) override {
    const config::Meter& first = *meters_.front();
    const SerialSettings s = serial_settings(first, "mbus");
    SerialSource src(s);
    struct Slave {
      const config::Meter* m;
      mbus_link::FcbState fcb;
      bool need_reset = true;
      int64_t next = 0;
      int failures = 0;
    };
    std::vector<Slave> slaves;
    for (const auto* m : meters_) {
      slaves.push_back(Slave{m, {}, true, 0, 0});
      log::info("meter %s: M-Bus address %lld on %s every %lld ms", m->name.c_str(),
                (long long)m->address, src.describe().c_str(), (long long)m->interval_ms);
    }
    while (w_.running()) {
      int64_t soonest = clock::mono_ns() + 200000000;
      for (auto& sl : slaves) {
        const int64_t now = clock::mono_ns();
        if (now < sl.next) {
          soonest = std::min(soonest, sl.next);
          continue;
        }
        sl.next = now + sl.m->interval_ms * 1000000;
        soonest = std::min(soonest, sl.next);
        const uint8_t addr = uint8_t(sl.m->address);
        std::string err;
        auto progress = [&] { w_.progress(slot); };
        if (sl.need_reset) {
          if (mbus_poll::reset(src, addr, unsigned(s.baud), err, progress)) sl.fcb.reset();
          sl.need_reset = false;  // a meter that ignores SND_NKE may still answer REQ_UD2
        }
        auto res = mbus_poll::read(src, addr, unsigned(s.baud), sl.fcb, 8, progress);
        w_.progress(slot);
        w_.count("requests_" + sl.m->name);
        const int64_t wall = clock::wall_ns(), mono = clock::mono_ns();
        for (size_t i = 0; i < res.frames.size(); ++i) {
          publish_raw(w_, sl.m->name, "mbus", std::move(res.frames[i]), wall, mono,
                      i + 1 == res.frames.size());
        }
        if (!res.ok()) {
          w_.count("errors_" + sl.m->name);
          if (sl.failures++ == 0)
            log::warn("meter %s: %s", sl.m->name.c_str(), res.error.c_str());
          sl.need_reset = true;
        } else if (sl.failures) {
          log::info("meter %s: answering again after %d failed polls", sl.m->name.c_str(),
                    sl.failures);
          sl.failures = 0;
        }
        // unavailable after 2 failed polls in a row (each already repeats its request once)
        w_.info("state_" + sl.m->name, sl.failures >= 2 ? "unavailable" : "ok");
      }
      sleep_until(w_, slot, soonest);
    }
  }

 private:
  Worker& w_;
  std::vector<const config::Meter*> meters_;
};

}  // namespace

void set_journal(journal::Writer* j) { g_journal = j; }

std::vector<std::unique_ptr<Runner>> make_runners(Worker& w, std::vector<std::string>& problems) {
  std::vector<std::unique_ptr<Runner>> out;
  std::map<std::string, std::vector<const config::Meter*>> modbus_buses, mbus_lines;
  for (const auto& m : w.cfg().meters) {
    if (m.protocol == "modbus" || m.protocol == "sunspec") {
      const std::string key = m.source == "tcp" ? m.host + ":" + std::to_string(m.port) : m.device;
      if (m.source != "tcp" && m.source != "serial") {
        problems.push_back("meter " + m.name + ": Modbus needs source \"tcp\" or \"serial\"");
        continue;
      }
      modbus_buses[key].push_back(&m);
    } else if (m.protocol == "mbus") {
      if (m.source != "serial") {
        problems.push_back("meter " + m.name + ": M-Bus needs source \"serial\"");
        continue;
      }
      mbus_lines[m.device].push_back(&m);
    } else {
      std::string why;
      auto r = make_runner(w, m, why);
      if (r) out.push_back(std::move(r));
      else problems.push_back("meter " + m.name + ": " + why);
    }
  }
  for (auto& [k, ms] : modbus_buses) out.push_back(std::make_unique<ModbusRunner>(w, ms));
  for (auto& [k, ms] : mbus_lines) out.push_back(std::make_unique<MbusRunner>(w, ms));
  return out;
}

std::unique_ptr<Runner> make_runner(Worker& w, const config::Meter& m, std::string& why) {
  if (m.protocol == "dsmr") {
    if (m.source == "simulate") return std::make_unique<SimRunner>(w, m);
    if (m.source == "file") return std::make_unique<FileRunner>(w, m);
    if (m.source == "tcp") {
      TcpSettings s;
      s.host = m.host;
      s.port = int(m.port);
      return std::make_unique<StreamRunner>(w, m, std::make_unique<TcpSource>(s));
    }
    if (m.source == "serial") {
      return std::make_unique<StreamRunner>(
          w, m, std::make_unique<SerialSource>(serial_settings(m, "dsmr5")));
    }
  }
  why = "protocol \"" + m.protocol + "\" with source \"" + m.source +
        "\" is not supported by this version of acquire";
  return nullptr;
}

}  // namespace mp::acquire
