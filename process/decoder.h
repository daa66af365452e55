// Dispatch of raw frames to the protocol decoders, per meter: each meter gets the decoder
// its protocol makes (protocols/registry.h); one Reading per telegram (DSMR) or per poll
// (Modbus, M-Bus: blocks are collected until the frame marked last_of_poll). Pure apart
// from reading key files at construction.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "meterpipe.pb.h"
#include "protocols/protocol.h"

namespace mp::process {

using Status = protocols::Status;

class Decoders {
 public:
  explicit Decoders(const config::Config& cfg);
  // Problems found while preparing (unreadable key files ...), one line each.
  const std::vector<std::string>& setup_errors() const { return setup_errors_; }

  // Decodes one raw frame. `reading` is filled when Status::reading; `error` holds the
  // reason when Status::error.
  Status decode(const meterpipe::RawFrame& raw, meterpipe::Reading& reading, std::string& error);

 private:
  std::map<std::string, std::unique_ptr<protocols::FrameDecoder>> meters_;
  std::vector<std::string> setup_errors_;
};

}  // namespace mp::process
