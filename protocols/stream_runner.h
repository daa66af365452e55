// The runner of every push protocol read from a byte stream (P1 telegrams, SML frames): the
// serial port or a TCP bridge as an acquire::ByteSource, cut into frames by the protocol's
// framer behind StreamFraming. One loop for all of them (docs/ARCHITECTURE.md, "Protocols";
// "Threading": between frames the read sleeps for the whole progress period, nothing polls).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "acquire/byte_source.h"
#include "protocols/protocol.h"

namespace mp::protocols {

// What a protocol's framer does with the stream. Frames cut are handed to `publish`.
class StreamFraming {
 public:
  using Publish = std::function<void(std::string&& frame, std::string_view protocol)>;
  virtual ~StreamFraming() = default;
  // A frame has begun: the read waits at most 250 ms (quiet may end it), not a whole period.
  virtual bool in_frame() const = 0;
  virtual void feed(const uint8_t* bytes, size_t n, const Publish& publish) = 0;
  // The line was quiet for the read's timeout (a frame may be complete now).
  virtual void quiet(const Publish&) {}
  // The source lost its device: bytes before and after do not belong to one frame.
  virtual void restart(const Publish& publish) = 0;
  // The framer's counters into the worker's health (`<name>_<meter>`), logged as it likes.
  virtual void report(RunContext& ctx, const std::string& meter) = 0;
};

class StreamRunner : public Runner {
 public:
  // `what` names the stream in the start line ("P1", "SML", "encrypted P1").
  StreamRunner(RunContext& ctx, const config::Meter& m, std::unique_ptr<acquire::ByteSource> src,
               std::unique_ptr<StreamFraming> framing, std::string what);
  void run(int slot) override;

 private:
  void restart_after_outage(const StreamFraming::Publish& publish);

  RunContext& ctx_;
  const config::Meter& m_;
  std::unique_ptr<acquire::ByteSource> src_;
  std::unique_ptr<StreamFraming> framing_;
  std::string what_;
  uint64_t outages_seen_ = 0;
};

// The ByteSource of a meter with source "serial" or "tcp"; nullptr for any other source.
std::unique_ptr<acquire::ByteSource> make_stream_source(const config::Meter& m);

// Runtime::make_runners for a protocol: make_one for each meter, a problem naming the meter
// when it returns nullptr (a source this protocol does not read).
using MakeOne = std::unique_ptr<Runner> (*)(RunContext&, const config::Meter&);
void make_each(std::string_view protocol, MakeOne make_one, RunContext& ctx,
               const std::vector<const config::Meter*>& meters,
               std::vector<std::unique_ptr<Runner>>& out, std::vector<std::string>& problems);

}  // namespace mp::protocols
