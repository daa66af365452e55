// M-Bus meters (EN 13757-3) on a serial line through a level converter: polled by
// protocols/mbus/mbus_poll.h, decoded by protocols/mbus/mbus.h. The meters of one line share
// one runner; a multi-telegram answer is one reading.
#include <CLI/CLI.hpp>
#include <cerrno>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <span>

#include "common/clock.h"
#include "common/log.h"
#include "protocols/mbus/decode_mbus_cli.h"
#include "protocols/mbus/mbus.h"
#include "protocols/mbus/mbus_link.h"
#include "protocols/mbus/mbus_poll.h"
#include "protocols/runner_support.h"
#include "protocols/specs.h"

namespace mp::protocols::mbus {

namespace {

class LineRunner : public Runner {
 public:
  LineRunner(RunContext& ctx, std::vector<const config::Meter*> meters)
      : ctx_(ctx), meters_(std::move(meters)), settings_(serial_settings(*meters_.front())) {}

  void run(int slot) override {
    acquire::SerialSource src(settings_);
    for (const auto* m : meters_) {
      slaves_.push_back(Slave{m, {}, true, 0, 0});
      log::info("meter %s: M-Bus address %lld on %s every %lld ms", m->name.c_str(),
                (long long)m->address, src.describe().c_str(), (long long)m->interval_ms);
    }
    while (ctx_.running()) {
      int64_t soonest = clock::mono_ns() + 200000000;
      for (auto& sl : slaves_) {
        const int64_t now = clock::mono_ns();
        if (now >= sl.next) {
          sl.next = now + sl.m->interval_ms * 1000000;
          poll(src, sl, slot);
        }
        soonest = std::min(soonest, sl.next);
      }
      sleep_until(ctx_, slot, soonest);
    }
  }

 private:
  struct Slave {
    const config::Meter* m;
    mp::mbus_link::FcbState fcb;
    bool need_reset = true;
    int64_t next = 0;
    int failures = 0;
  };

  void poll(acquire::SerialSource& src, Slave& sl, int slot) {
    const uint8_t addr = uint8_t(sl.m->address);
    const unsigned baud = unsigned(settings_.baud);
    std::string err;
    auto progress = [&] { ctx_.progress(slot); };
    if (sl.need_reset) {
      if (mp::mbus_poll::reset(src, addr, baud, err, progress)) sl.fcb.reset();
      sl.need_reset = false;  // a meter that ignores SND_NKE may still answer REQ_UD2
    }
    auto res = mp::mbus_poll::read(src, addr, baud, sl.fcb, 8, progress);
    ctx_.progress(slot);
    ctx_.count("requests_" + sl.m->name);
    const int64_t wall = clock::wall_ns(), mono = clock::mono_ns();
    for (size_t i = 0; i < res.frames.size(); ++i)
      ctx_.publish(make_raw(sl.m->name, "mbus", std::move(res.frames[i]), wall, mono,
                            i + 1 == res.frames.size()));
    note_result(sl, res.ok(), res.error);
  }

  void note_result(Slave& sl, bool ok, const std::string& error) {
    if (!ok) {
      ctx_.count("errors_" + sl.m->name);
      if (sl.failures++ == 0) log::warn("meter %s: %s", sl.m->name.c_str(), error.c_str());
      sl.need_reset = true;
    } else if (sl.failures) {
      log::info("meter %s: answering again after %d failed polls", sl.m->name.c_str(), sl.failures);
      sl.failures = 0;
    }
    ctx_.info("state_" + sl.m->name, sl.failures >= 2 ? "unavailable" : "ok");
  }

  RunContext& ctx_;
  std::vector<const config::Meter*> meters_;
  acquire::SerialSettings settings_;
  std::vector<Slave> slaves_;
};

void make_runners(RunContext& ctx, const std::vector<const config::Meter*>& meters,
                  std::vector<std::unique_ptr<Runner>>& out, std::vector<std::string>& problems) {
  std::map<std::string, std::vector<const config::Meter*>> lines;
  for (const auto* m : meters) {
    if (m->source != "serial") {
      problems.push_back("meter " + m->name + ": M-Bus needs source \"serial\"");
      continue;
    }
    lines[m->device].push_back(m);
  }
  for (auto& [line, ms] : lines) out.push_back(std::make_unique<LineRunner>(ctx, ms));
}

// M-Bus times are the meter's wall clock: converted with the process's time zone (TZ, set
// from general.timezone by the worker harness, bus/worker.cpp, in every worker that decodes:
// process, actuate, upload, history). False when the zone cannot convert it.
bool local_to_utc(int64_t local_seconds, int64_t& utc_seconds) {
  const time_t t = static_cast<time_t>(local_seconds);
  struct tm tm {};
  if (!gmtime_r(&t, &tm)) return false;
  tm.tm_isdst = -1;
  errno = 0;
  const time_t u = mktime(&tm);
  if (u == static_cast<time_t>(-1) && errno != 0) return false;
  utc_seconds = static_cast<int64_t>(u);
  return true;
}

// The telegrams of one poll (a multi-telegram answer), collected until last_of_poll.
class Decoder : public FrameDecoder {
 public:
  Status decode(const meterpipe::RawFrame& raw, Reading& out, std::string& error) override {
    const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data().data());
    auto res = mp::mbus::decode(std::span<const uint8_t>(bytes, raw.data().size()));
    if (!res.error.empty()) {
      error = "M-Bus frame: " + res.error;
      partial_ = Reading{};
      return Status::error;
    }
    Reading part;
    std::string why;
    mp::mbus::to_reading(res.frame, part, &why, local_to_utc);
    partial_.protocol = "mbus";
    if (!part.device_id.empty()) partial_.device_id = part.device_id;
    if (part.meter_time_ns) partial_.meter_time_ns = part.meter_time_ns;
    for (auto& v : part.values) partial_.values.push_back(std::move(v));
    if (!raw.last_of_poll()) return Status::pending;
    out = std::move(partial_);
    partial_ = Reading{};
    return Status::reading;
  }

 private:
  Reading partial_;
};

std::unique_ptr<FrameDecoder> make_decoder(const config::Meter&, std::string&) {
  return std::make_unique<Decoder>();
}

void add_cli(CLI::App&, CLI::App& decode, std::vector<CliCommand>& out) {
  auto file = std::make_shared<std::string>("-");
  auto* sub = decode.add_subcommand("mbus", "M-Bus frames (hex text or binary) -> JSON");
  sub->add_option("FILE", *file, "File with frames, - for stdin")->default_val("-");
  out.push_back({sub, [file] { return mp::mbus::decode_mbus_file(*file, std::cout, std::cerr); }});
}

}  // namespace

extern const Runtime runtime;
const Runtime runtime{
    .make_runners = make_runners,
    .make_decoder = make_decoder,
    .add_cli = add_cli,
};

}  // namespace mp::protocols::mbus
