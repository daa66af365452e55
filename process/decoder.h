// Dispatch of raw frames to the protocol decoders, per meter: one Reading per telegram
// (DSMR) or per poll (Modbus, M-Bus: blocks are collected until the frame marked
// last_of_poll). Pure apart from reading key files at construction.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/reading.h"
#include "config/config.h"
#include "meterpipe.pb.h"

namespace mp::process {

enum class Status { reading, pending, error };

class Decoders {
 public:
  explicit Decoders(const config::Config& cfg);
  // Problems found while preparing (unreadable key files ...), one line each.
  const std::vector<std::string>& setup_errors() const { return setup_errors_; }

  // Decodes one raw frame. `reading` is filled when Status::reading; `error` holds the
  // reason when Status::error.
  Status decode(const meterpipe::RawFrame& raw, meterpipe::Reading& reading, std::string& error);

 private:
  struct MeterState {
    const config::Meter* cfg = nullptr;
    std::string key, auth_key;  // encrypted P1
    Reading partial;            // values collected from earlier frames of a poll
  };
  Status decode_dsmr(MeterState& st, const meterpipe::RawFrame& raw, Reading& out,
                     std::string& error);
  Status decode_multi(MeterState& st, const meterpipe::RawFrame& raw, Reading& out,
                      std::string& error);

  std::map<std::string, MeterState> meters_;
  std::vector<std::string> setup_errors_;
};

}  // namespace mp::process
