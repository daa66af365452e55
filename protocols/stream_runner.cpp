#include "protocols/stream_runner.h"

#include "acquire/serial_source.h"
#include "acquire/tcp_source.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/wake.h"
#include "protocols/runner_support.h"
#include "protocols/specs.h"

namespace mp::protocols {

StreamRunner::StreamRunner(RunContext& ctx, const config::Meter& m,
                           std::unique_ptr<acquire::ByteSource> src,
                           std::unique_ptr<StreamFraming> framing, std::string what)
    : ctx_(ctx),
      m_(m),
      src_(std::move(src)),
      framing_(std::move(framing)),
      what_(std::move(what)) {}

void StreamRunner::run(int slot) {
  log::info("meter %s: reading %s from %s", m_.name.c_str(), what_.c_str(),
            src_->describe().c_str());
  uint8_t buf[4096];
  int64_t wall = 0, mono = 0;  // the receive stamps of the bytes being cut
  const StreamFraming::Publish publish = [&](std::string&& frame, std::string_view protocol) {
    ctx_.publish(make_raw(m_.name, protocol, std::move(frame), wall, mono));
  };
  while (ctx_.running()) {
    // 250 ms of quiet may end a frame; between frames the read sleeps for the whole
    // progress period (common/wake.h)
    const int timeout_ms = framing_->in_frame() ? 250 : int(wake::progress_period_ns() / 1000000);
    const size_t n = src_->read(buf, sizeof buf, timeout_ms);
    ctx_.progress(slot);
    wall = clock::wall_ns();
    mono = clock::mono_ns();
    restart_after_outage(publish);
    if (n == 0) {
      framing_->quiet(publish);
      continue;
    }
    framing_->feed(buf, n, publish);
    framing_->report(ctx_, m_.name);
    ctx_.set_counter("reconnects_" + m_.name, src_->counters().reconnects);
  }
}

void StreamRunner::restart_after_outage(const StreamFraming::Publish& publish) {
  const uint64_t outages = src_->counters().outages;
  if (outages == outages_seen_) return;
  outages_seen_ = outages;
  framing_->restart(publish);
}

std::unique_ptr<acquire::ByteSource> make_stream_source(const config::Meter& m) {
  if (m.source == "tcp") {
    acquire::TcpSettings s;
    s.host = m.host;
    s.port = int(m.port);
    return std::make_unique<acquire::TcpSource>(s);
  }
  if (m.source == "serial") return std::make_unique<acquire::SerialSource>(serial_settings(m));
  return nullptr;
}

void make_each(std::string_view protocol, MakeOne make_one, RunContext& ctx,
               const std::vector<const config::Meter*>& meters,
               std::vector<std::unique_ptr<Runner>>& out, std::vector<std::string>& problems) {
  for (const auto* m : meters) {
    if (auto r = make_one(ctx, *m))
      out.push_back(std::move(r));
    else
      problems.push_back("meter " + m->name + ": protocol \"" + std::string(protocol) +
                         "\" with source \"" + m->source +
                         "\" is not supported by this version of acquire");
  }
}

}  // namespace mp::protocols
