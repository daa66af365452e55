// The SML protocol (protocols/sml/README.md): push meters whose IR head sends an SML file
// every second or so, read from a serial port or a TCP bridge, cut into transport frames by
// protocols/sml/sml_transport.h and decoded by protocols/sml/sml.h; or a simulated meter.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "acquire/tcp_source.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/wake.h"
#include "protocols/runner_support.h"
#include "protocols/sml/decode_sml_cli.h"
#include "protocols/sml/sml.h"
#include "protocols/sml/sml_sim.h"
#include "protocols/sml/sml_transport.h"
#include "protocols/specs.h"

namespace mp::protocols::sml {

namespace {

// Frames from a byte stream: the IR head on a serial port or a TCP bridge.
class StreamRunner : public Runner {
 public:
  StreamRunner(RunContext& ctx, const config::Meter& m, std::unique_ptr<acquire::ByteSource> src)
      : ctx_(ctx), m_(m), src_(std::move(src)) {}

  void run(int slot) override {
    log::info("meter %s: reading SML from %s", m_.name.c_str(), src_->describe().c_str());
    uint8_t buf[2048];
    while (ctx_.running()) {
      // between frames read sleeps for the whole progress period, as P1's reader does
      // (docs/ARCHITECTURE.md, "Threading": nothing polls)
      const int timeout_ms = framer_.in_frame() ? 250 : int(wake::progress_period_ns() / 1000000);
      const size_t n = src_->read(buf, sizeof buf, timeout_ms);
      ctx_.progress(slot);
      restart_framing_after_outage();
      if (n == 0) continue;
      cut_and_publish(buf, n);
      report_counters();
    }
  }

 private:
  // Bytes before and after an outage do not belong to one frame.
  void restart_framing_after_outage() {
    const uint64_t outages = src_->counters().outages;
    if (outages == outages_seen_) return;
    outages_seen_ = outages;
    framer_.reset();
  }
  void cut_and_publish(const uint8_t* buf, size_t n) {
    const int64_t wall = clock::wall_ns(), mono = clock::mono_ns();
    framer_.feed(buf, n);
    std::string frame;
    while (framer_.pop(frame)) ctx_.publish(make_raw(m_.name, "sml", std::move(frame), wall, mono));
  }
  void report_counters() {
    const auto& c = framer_.counters();
    if (c.crc_errors > crc_errors_logged_) {
      if (crc_errors_logged_ == 0)
        log::warn("meter %s: SML frame with a CRC mismatch dropped (counted in crc_errors_%s)",
                  m_.name.c_str(), m_.name.c_str());
      crc_errors_logged_ = c.crc_errors;
    }
    ctx_.set_counter("discarded_bytes_" + m_.name, c.discarded_bytes);
    ctx_.set_counter("truncated_" + m_.name, c.truncated);
    ctx_.set_counter("crc_errors_" + m_.name, c.crc_errors);
    ctx_.set_counter("bad_escape_" + m_.name, c.bad_escape);
    ctx_.set_counter("oversize_" + m_.name, c.oversize);
    ctx_.set_counter("reconnects_" + m_.name, src_->counters().reconnects);
  }

  RunContext& ctx_;
  const config::Meter& m_;
  std::unique_ptr<acquire::ByteSource> src_;
  mp::sml::Framer framer_;
  uint64_t outages_seen_ = 0, crc_errors_logged_ = 0;
};

// source = "simulate": mp::sml::make_sim_frame at rate_hz, `speed` simulated s per real s.
class SimRunner : public Runner {
 public:
  SimRunner(RunContext& ctx, const config::Meter& m) : ctx_(ctx), m_(m) {}
  void run(int slot) override {
    mp::sml::SimState state;
    state.seed = uint64_t(m_.seed);
    const int64_t wall0 = clock::wall_ns(), mono0 = clock::mono_ns();
    const int64_t period = int64_t(1e9 / m_.rate_hz);
    log::info("meter %s: simulated SML meter, %.3g frame/s, time x%.3g", m_.name.c_str(),
              m_.rate_hz, m_.speed);
    for (int64_t k = 1; ctx_.running(); ++k) {
      if (!sleep_until(ctx_, slot, mono0 + k * period)) break;
      const int64_t mono = clock::mono_ns();
      const int64_t sim_time = wall0 + int64_t(double(mono - mono0) * m_.speed);
      std::string f = mp::sml::make_sim_frame(sim_time, state);
      ctx_.publish(make_raw(m_.name, "sml", std::move(f), clock::wall_ns(), mono));
    }
  }

 private:
  RunContext& ctx_;
  const config::Meter& m_;
};

std::unique_ptr<Runner> make_one(RunContext& ctx, const config::Meter& m) {
  if (m.source == "simulate") return std::make_unique<SimRunner>(ctx, m);
  if (m.source == "tcp") {
    acquire::TcpSettings s;
    s.host = m.host;
    s.port = int(m.port);
    return std::make_unique<StreamRunner>(ctx, m, std::make_unique<acquire::TcpSource>(s));
  }
  if (m.source == "serial")
    return std::make_unique<StreamRunner>(
        ctx, m, std::make_unique<acquire::SerialSource>(serial_settings(m)));
  return nullptr;
}

void make_runners(RunContext& ctx, const std::vector<const config::Meter*>& meters,
                  std::vector<std::unique_ptr<Runner>>& out, std::vector<std::string>& problems) {
  for (const auto* m : meters) {
    if (auto r = make_one(ctx, *m))
      out.push_back(std::move(r));
    else
      problems.push_back("meter " + m->name + ": protocol \"sml\" with source \"" + m->source +
                         "\" is not supported by this version of acquire");
  }
}

class Decoder : public FrameDecoder {
 public:
  Status decode(const meterpipe::RawFrame& raw, Reading& out, std::string& error) override {
    mp::sml::File file;
    const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data().data());
    if (!mp::sml::decode_frame({bytes, raw.data().size()}, file, error)) return Status::error;
    out = Reading{};
    mp::sml::to_reading(file, out);
    return Status::reading;
  }
};

std::unique_ptr<FrameDecoder> make_decoder(const config::Meter&, std::string&) {
  return std::make_unique<Decoder>();
}

void add_cli(CLI::App&, CLI::App& decode, std::vector<CliCommand>& out) {
  auto file = std::make_shared<std::string>("-");
  auto* sub = decode.add_subcommand("sml", "SML 1.04 frames (binary or hex dump) -> JSON");
  sub->add_option("FILE", *file, "File with SML bytes or their hex dump, - for stdin")
      ->default_val("-");
  out.push_back({sub, [file] { return mp::sml::decode_sml_file(*file, std::cout, std::cerr); }});
}

}  // namespace

extern const Runtime runtime;
const Runtime runtime{
    .make_runners = make_runners,
    .make_decoder = make_decoder,
    .add_cli = add_cli,
};

}  // namespace mp::protocols::sml
