// The SML protocol (protocols/sml/README.md): push meters whose IR head sends an SML file
// every second or so, read from a serial port or a TCP bridge, cut into transport frames by
// protocols/sml/sml_transport.h and decoded by protocols/sml/sml.h; or a simulated meter.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "common/clock.h"
#include "common/log.h"
#include "protocols/runner_support.h"
#include "protocols/sml/decode_sml_cli.h"
#include "protocols/sml/sml.h"
#include "protocols/sml/sml_sim.h"
#include "protocols/sml/sml_transport.h"
#include "protocols/specs.h"
#include "protocols/stream_runner.h"

namespace mp::protocols::sml {

namespace {

// Frames from a byte stream (the IR head on a serial port or a TCP bridge;
// protocols/stream_runner.h), cut by the SML transport framer.
class Framing : public StreamFraming {
 public:
  bool in_frame() const override { return framer_.in_frame(); }
  void feed(const uint8_t* bytes, size_t n, const Publish& publish) override {
    framer_.feed(bytes, n);
    std::string frame;
    while (framer_.pop(frame)) publish(std::move(frame), "sml");
  }
  void restart(const Publish&) override { framer_.reset(); }
  void report(RunContext& ctx, const std::string& meter) override {
    const auto& c = framer_.counters();
    if (c.crc_errors > crc_errors_logged_) {
      if (crc_errors_logged_ == 0)
        log::warn("meter %s: SML frame with a CRC mismatch dropped (counted in crc_errors_%s)",
                  meter.c_str(), meter.c_str());
      crc_errors_logged_ = c.crc_errors;
    }
    ctx.set_counter("discarded_bytes_" + meter, c.discarded_bytes);
    ctx.set_counter("truncated_" + meter, c.truncated);
    ctx.set_counter("crc_errors_" + meter, c.crc_errors);
    ctx.set_counter("bad_escape_" + meter, c.bad_escape);
    ctx.set_counter("oversize_" + meter, c.oversize);
  }

 private:
  mp::sml::Framer framer_;
  uint64_t crc_errors_logged_ = 0;
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
  auto src = make_stream_source(m);
  if (!src) return nullptr;
  return std::make_unique<StreamRunner>(ctx, m, std::move(src), std::make_unique<Framing>(), "SML");
}

void make_runners(RunContext& ctx, const std::vector<const config::Meter*>& meters,
                  std::vector<std::unique_ptr<Runner>>& out, std::vector<std::string>& problems) {
  make_each("sml", make_one, ctx, meters, out, problems);
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
