// Relay control from the page and the REST API (POST /api/relays/{name}): the request
// body, the control request to actuate (the same text `meterpipe relay` and the mqtt worker
// send; bus/control.h) and the answer. Pure: the caller does the control_request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "serve/api.h"

namespace mp::serve {

struct RelayCommand {
  std::string relay;
  std::string mode;   // on | off | auto
  int64_t for_s = 0;  // override duration (on/off only); 0 = until changed
};

// {"mode":"on","for_s":3600} (JSON) or mode=on&for_s=3600 (a form; `csrf_field` gets its
// csrf field). False with `error` for a bad body, an unknown mode or field, a duration out of
// 1 s .. 366 days or one that goes with auto.
bool parse_relay_command(const std::string& body, bool form, RelayCommand& c,
                         std::string& csrf_field, std::string& error);

// "relay NAME MODE [SECONDS]" for actuate's control channel.
std::string relay_control_text(const RelayCommand& c);

// The relay's entry of actuate's "status" reply as JSON ("" when it is not there).
std::string relay_status_entry(const std::string& status_reply, const std::string& relay);

// The HTTP answer: `reply` is actuate's answer to the control request (nullopt: it did not
// answer), `status_entry` the relay's entry afterwards. 200 {"ok":true,...,"status":{...}};
// 404 for an unknown relay; 409 when actuate refused (its reason in "error"); 503 when it
// does not answer.
Response relay_control_response(const RelayCommand& c, const std::optional<std::string>& reply,
                                const std::string& status_entry);

// The WebSocket message other pages get after a successful switch.
std::string relay_control_event(const RelayCommand& c, const std::string& user,
                                const std::string& status_entry);

}  // namespace mp::serve
