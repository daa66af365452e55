// The P1 / DSMR protocol (protocols/dsmr/README.md): telegrams cut from a byte stream
// (serial port, TCP), a file or the simulator, decoded by protocols/dsmr/dsmr.h, encrypted
// ones (Luxembourg Smarty, Austria) first decrypted by protocols/dsmr/dlms.h.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "protocols/dsmr/decode_dsmr_cli.h"
#include "protocols/dsmr/dlms.h"
#include "protocols/dsmr/dsmr.h"
#include "protocols/dsmr/dsmr_framer.h"
#include "protocols/runner_support.h"
#include "protocols/simulate/sim_runner.h"
#include "protocols/specs.h"
#include "protocols/stream_runner.h"

namespace mp::protocols::dsmr {

namespace {

// Telegrams from a byte stream (the P1 port or a TCP bridge; protocols/stream_runner.h):
// plain ones cut by the P1 framer, encrypted ones (key_file set) by the DLMS frame splitter.
class Framing : public StreamFraming {
 public:
  explicit Framing(bool encrypted) : encrypted_(encrypted) {}
  bool in_frame() const override { return framer_.in_telegram(); }
  void feed(const uint8_t* bytes, size_t n, const Publish& publish) override {
    std::string frame;
    if (encrypted_) {
      splitter_.feed(bytes, n);
      while (splitter_.pop(frame)) publish(std::move(frame), "dsmr-dlms");
    } else {
      framer_.feed(bytes, n);
      while (framer_.pop(frame)) publish(std::move(frame), "dsmr");
    }
  }
  // A telegram that ended right after its CRC digits (no CR LF) is whole once the line went
  // quiet or was lost.
  void quiet(const Publish& publish) override {
    std::string frame;
    if (!encrypted_ && framer_.finish())
      while (framer_.pop(frame)) publish(std::move(frame), "dsmr");
  }
  void restart(const Publish& publish) override {
    quiet(publish);
    framer_.reset();
    splitter_.reset();
  }
  void report(RunContext& ctx, const std::string& meter) override {
    const auto& c = framer_.counters();
    ctx.set_counter("discarded_bytes_" + meter,
                    c.discarded_bytes + splitter_.counters().discarded_bytes);
    ctx.set_counter("truncated_" + meter, c.truncated);
    ctx.set_counter("oversize_" + meter, c.oversize);
  }

 private:
  bool encrypted_;
  mp::dsmr::Framer framer_;
  mp::dlms::FrameSplitter splitter_;
};

// source = "file": the telegrams of a file, replayed at rate_hz.
class FileRunner : public Runner {
 public:
  FileRunner(RunContext& ctx, const config::Meter& m) : ctx_(ctx), m_(m) {}
  void run(int slot) override {
    std::string bytes, error;
    if (!fs::read_file(m_.file, bytes, error)) {
      log::error("meter %s: %s", m_.name.c_str(), error.c_str());
    } else if (!replay(slot, bytes)) {
      return;
    }
    while (ctx_.running()) sleep_until(ctx_, slot, clock::mono_ns() + 500000000);
  }

 private:
  bool replay(int slot, const std::string& bytes) {
    mp::dsmr::Framer framer;
    const int64_t period = int64_t(1e9 / m_.rate_hz);
    int64_t next = clock::mono_ns();
    size_t sent = 0;
    auto publish_ready = [&] {  // false when stopping
      std::string t;
      while (framer.pop(t)) {
        if (!sleep_until(ctx_, slot, next)) return false;
        next += period;
        ctx_.publish(make_raw(m_.name, "dsmr", std::move(t), clock::wall_ns(), clock::mono_ns()));
        ++sent;
      }
      return true;
    };
    for (size_t off = 0; off < bytes.size() && ctx_.running(); off += 512) {
      framer.feed(reinterpret_cast<const uint8_t*>(bytes.data()) + off,
                  std::min<size_t>(512, bytes.size() - off));
      if (!publish_ready()) return false;
    }
    framer.finish();  // the file may end right after the last CRC
    if (!publish_ready()) return false;
    log::info("meter %s: replayed %zu telegrams from %s", m_.name.c_str(), sent, m_.file.c_str());
    return true;
  }

  RunContext& ctx_;
  const config::Meter& m_;
};

std::unique_ptr<Runner> make_one(RunContext& ctx, const config::Meter& m) {
  if (m.source == "simulate") return simulate::make_runner(ctx, m);
  if (m.source == "file") return std::make_unique<FileRunner>(ctx, m);
  auto src = make_stream_source(m);
  if (!src) return nullptr;
  const bool encrypted = !m.key_file.empty();
  return std::make_unique<StreamRunner>(ctx, m, std::move(src),
                                        std::make_unique<Framing>(encrypted),
                                        encrypted ? "encrypted P1" : "P1");
}

void make_runners(RunContext& ctx, const std::vector<const config::Meter*>& meters,
                  std::vector<std::unique_ptr<Runner>>& out, std::vector<std::string>& problems) {
  make_each("dsmr", make_one, ctx, meters, out, problems);
}

// Plain telegrams ("dsmr") and encrypted DLMS frames ("dsmr-dlms").
class Decoder : public FrameDecoder {
 public:
  explicit Decoder(const mp::dlms::Keys* keys) : has_keys_(keys != nullptr) {
    if (keys) keys_ = *keys;
  }
  Status decode(const meterpipe::RawFrame& raw, Reading& out, std::string& error) override {
    std::string plaintext;
    std::string_view telegram = raw.data();
    if (raw.protocol() == "dsmr-dlms") {
      if (!has_keys_) {
        error = "encrypted telegram but no usable key_file for this meter";
        return Status::error;
      }
      if (!mp::dlms::decrypt(raw.data(), keys_, plaintext, error)) return Status::error;
      telegram = plaintext;
    }
    mp::dsmr::Result res;
    if (!mp::dsmr::decode(telegram, res)) {
      error = res.errors.empty() ? "telegram could not be decoded" : res.errors.front();
      return Status::error;
    }
    out = std::move(res.reading);
    return Status::reading;
  }

 private:
  bool has_keys_;
  mp::dlms::Keys keys_{};
};

std::unique_ptr<FrameDecoder> make_decoder(const config::Meter& m, std::string& error) {
  if (m.key_file.empty()) return std::make_unique<Decoder>(nullptr);
  std::string text, err;
  mp::dlms::Keys keys;
  if (!fs::read_file(m.key_file, text, err)) {
    error = "meter " + m.name + ": key_file: " + err;
  } else if (!mp::dlms::parse_key_file(text, keys, err)) {
    error = "meter " + m.name + ": key_file " + m.key_file + ": " + err;
  } else {
    return std::make_unique<Decoder>(&keys);
  }
  // frames still arrive: each is refused with the reason (its relays stay failsafe)
  return std::make_unique<Decoder>(nullptr);
}

void add_cli(CLI::App&, CLI::App& decode, std::vector<CliCommand>& out) {
  struct Args {
    std::string file = "-", key_file;
  };
  auto args = std::make_shared<Args>();
  auto* sub = decode.add_subcommand("dsmr", "P1 telegrams -> one JSON object per telegram");
  sub->add_option("FILE", args->file, "File with telegrams, - for stdin")->default_val("-");
  sub->add_option("--key-file", args->key_file, "Key for encrypted P1 (hex or 16 bytes)");
  out.push_back({sub, [args] {
                   return mp::dsmr::decode_dsmr_file(args->file, args->key_file, std::cout,
                                                     std::cerr);
                 }});
}

}  // namespace

extern const Runtime runtime;
const Runtime runtime{
    .make_runners = make_runners,
    .make_decoder = make_decoder,
    .add_cli = add_cli,
};

}  // namespace mp::protocols::dsmr
