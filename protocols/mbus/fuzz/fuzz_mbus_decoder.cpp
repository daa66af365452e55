// libFuzzer target: the M-Bus decoder, the JSON/Reading mapping and the link receiver must
// never crash, hang or read out of bounds, whatever the bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "protocols/mbus/mbus_link.h"
#include "common/reading.h"
#include "protocols/mbus/mbus.h"

// Times converted as if the meter's clock ran in UTC (exercises the time mapping).
static bool as_utc(int64_t local_seconds, int64_t& utc_seconds) {
  utc_seconds = local_seconds;
  return true;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  const mp::mbus::DecodeResult res = mp::mbus::decode(in);
  if (res.ok()) {
    mp::Reading r;
    mp::mbus::to_reading(res.frame, r, nullptr, as_utc);
    volatile size_t n = mp::mbus::to_json(res.frame).size();
    (void)n;
  } else if (res.error.empty()) {
    __builtin_trap();
  }
  // The user data alone, under every CI the decoder knows: exercises the record parser
  // without needing a valid checksum.
  if (size > 1) {
    const mp::mbus::DecodeResult u = mp::mbus::decode_user_data(data[0], in.subspan(1));
    if (u.ok()) {
      mp::Reading r;
      mp::mbus::to_reading(u.frame, r, nullptr, as_utc);
      volatile size_t n = mp::mbus::to_json(u.frame).size();
      (void)n;
    }
  }
  mp::mbus_link::Receiver rx;
  for (size_t i = 0; i < size; i += 7) {
    auto st = rx.push(in.subspan(i, std::min<size_t>(7, size - i)));
    while (st == mp::mbus_link::Receiver::Status::frame) st = rx.consume();
    if (st == mp::mbus_link::Receiver::Status::garbage) rx.reset();
  }
  return 0;
}
