#include "process/decoder.h"

#include "process/reading_proto.h"
#include "protocols/registry.h"

namespace mp::process {

Decoders::Decoders(const config::Config& cfg) {
  for (const auto& m : cfg.meters) {
    const protocols::Spec* d = protocols::find(m.protocol);
    auto make_decoder = d ? protocols::runtime(*d).make_decoder : nullptr;
    if (!make_decoder) {
      setup_errors_.push_back("meter " + m.name + ": no decoder for protocol \"" + m.protocol +
                              "\"");
      continue;
    }
    std::string error;
    auto decoder = make_decoder(m, error);
    if (!error.empty()) setup_errors_.push_back(error);
    if (decoder) meters_[m.name] = std::move(decoder);
  }
}

Status Decoders::decode(const meterpipe::RawFrame& raw, meterpipe::Reading& reading,
                        std::string& error) {
  auto it = meters_.find(raw.source());
  if (it == meters_.end()) {
    error = "frame from unknown meter \"" + raw.source() + "\" (not in this config)";
    return Status::error;
  }
  Reading r;
  const Status s = it->second->decode(raw, r, error);
  if (s != Status::reading) return s;
  r.meter = raw.source();
  r.receive_time_ns = raw.receive_time_ns();
  to_proto(r, &reading);
  reading.set_receive_mono_ns(raw.receive_mono_ns());
  reading.set_clock_synced(raw.clock_synced());
  return Status::reading;
}

}  // namespace mp::process
