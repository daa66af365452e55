// The P1 / DSMR protocol (protocols/dsmr/README.md): telegrams cut from a byte stream
// (serial port, TCP), a file or the simulator, decoded by protocols/dsmr/dsmr.h, encrypted
// ones (Luxembourg Smarty, Austria) first decrypted by protocols/dsmr/dlms.h.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "acquire/tcp_source.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/wake.h"
#include "protocols/dsmr/decode_dsmr_cli.h"
#include "protocols/dsmr/dlms.h"
#include "protocols/dsmr/dsmr.h"
#include "protocols/dsmr/dsmr_framer.h"
#include "protocols/runner_support.h"
#include "protocols/simulate/sim_runner.h"
#include "protocols/specs.h"

namespace mp::protocols::dsmr {

namespace {

// Telegrams from a byte stream: the P1 port or a TCP bridge.
class StreamRunner : public Runner {
 public:
  StreamRunner(RunContext& ctx, const config::Meter& m, std::unique_ptr<acquire::ByteSource> src)
      : ctx_(ctx), m_(m), src_(std::move(src)), encrypted_(!m.key_file.empty()) {}

  void run(int slot) override {
    log::info("meter %s: reading %s%s", m_.name.c_str(), src_->describe().c_str(),
              encrypted_ ? " (encrypted P1)" : "");
    uint8_t buf[4096];
    while (ctx_.running()) {
      // 250 ms of quiet ends a telegram without CR LF after its CRC; between telegrams the
      // read sleeps for the whole progress period (common/wake.h)
      const int timeout_ms =
          framer_.in_telegram() ? 250 : int(wake::progress_period_ns() / 1000000);
      const size_t n = src_->read(buf, sizeof buf, timeout_ms);
      ctx_.progress(slot);
      restart_framing_after_outage();
      if (n == 0) {  // the line went quiet: a telegram without CR LF after its CRC is whole
        deliver_finished(clock::wall_ns(), clock::mono_ns());
        continue;
      }
      cut_and_publish(buf, n);
      report_counters();
    }
  }

 private:
  // Bytes before and after an outage do not belong to one telegram.
  void restart_framing_after_outage() {
    const uint64_t outages = src_->counters().outages;
    if (outages == outages_seen_) return;
    outages_seen_ = outages;
    deliver_finished(clock::wall_ns(), clock::mono_ns());
    framer_.reset();
    splitter_.reset();
  }
  // A telegram that ended right after its CRC digits (no CR LF) is delivered once the line
  // went quiet or was lost.
  void deliver_finished(int64_t wall, int64_t mono) {
    std::string frame;
    if (!encrypted_ && framer_.finish())
      while (framer_.pop(frame))
        ctx_.publish(make_raw(m_.name, "dsmr", std::move(frame), wall, mono));
  }
  void cut_and_publish(const uint8_t* buf, size_t n) {
    const int64_t wall = clock::wall_ns(), mono = clock::mono_ns();
    std::string frame;
    if (encrypted_) {
      splitter_.feed(buf, n);
      while (splitter_.pop(frame))
        ctx_.publish(make_raw(m_.name, "dsmr-dlms", std::move(frame), wall, mono));
    } else {
      framer_.feed(buf, n);
      while (framer_.pop(frame))
        ctx_.publish(make_raw(m_.name, "dsmr", std::move(frame), wall, mono));
    }
  }
  void report_counters() {
    const auto& c = framer_.counters();
    ctx_.set_counter("discarded_bytes_" + m_.name,
                     c.discarded_bytes + splitter_.counters().discarded_bytes);
    ctx_.set_counter("truncated_" + m_.name, c.truncated);
    ctx_.set_counter("oversize_" + m_.name, c.oversize);
    ctx_.set_counter("reconnects_" + m_.name, src_->counters().reconnects);
  }

  RunContext& ctx_;
  const config::Meter& m_;
  std::unique_ptr<acquire::ByteSource> src_;
  bool encrypted_;
  mp::dsmr::Framer framer_;
  mp::dlms::FrameSplitter splitter_;
  uint64_t outages_seen_ = 0;
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
      problems.push_back("meter " + m->name + ": protocol \"dsmr\" with source \"" + m->source +
                         "\" is not supported by this version of acquire");
  }
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
