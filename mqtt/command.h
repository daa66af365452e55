// Relay commands arriving on <base>/relay/<name>/set, turned into actuate's control request
// (the one `meterpipe relay NAME on|off|auto --for` sends).
//
// Payloads (case-insensitive state):
//   ON | OFF | AUTO                 manual override on/off until changed; AUTO ends it
//   ON 3600 | OFF 90m | ON 2h       override for a while (seconds, or s/m/h), then auto
//   {"state":"ON","for_s":3600}     the same as JSON (for_s optional)
#pragma once

#include <optional>
#include <string>

namespace mp::mqtt {

struct Command {
  std::string state;  // "on" | "off" | "auto"
  int64_t for_s = 0;  // 0 = until changed
};

// The command of a payload, or nullopt with `error` saying what is wrong.
std::optional<Command> parse_command(const std::string& payload, std::string& error);

// "relay NAME on|off|auto [SECONDS]"
std::string control_request_text(const std::string& relay, const Command& c);

}  // namespace mp::mqtt
