#include "protocols/mbus/mbus_poll.h"

#include <algorithm>

#include "common/clock.h"
#include "protocols/mbus/mbus.h"

namespace mp::mbus_poll {

namespace {

// Reads until the receiver holds a complete frame, garbage, or the timeout passes.
mbus_link::Receiver::Status receive(acquire::ByteSource& src, mbus_link::Receiver& rx,
                                    int64_t timeout_us, const Progress& progress) {
  const int64_t deadline = clock::mono_ns() + timeout_us * 1000;
  uint8_t buf[512];
  while (true) {
    if (progress) progress();
    const int64_t left_ms = (deadline - clock::mono_ns()) / 1000000;
    if (left_ms <= 0) return rx.status();
    const size_t n = src.read(buf, sizeof buf, int(std::min<int64_t>(left_ms, 250)));
    if (n == 0) continue;
    auto st = rx.push(std::span<const uint8_t>(buf, n));
    if (st != mbus_link::Receiver::Status::need_more) return st;
  }
}

bool send(acquire::ByteSource& src, const mbus_link::ShortFrame& f) {
  src.flush_input();
  return src.write(f.data(), f.size());
}

}  // namespace

bool reset(acquire::ByteSource& src, uint8_t address, unsigned baud, std::string& error,
           const Progress& progress) {
  if (!send(src, mbus_link::snd_nke(address))) {
    error = "cannot write to " + src.describe();
    return false;
  }
  mbus_link::Receiver rx;
  auto st = receive(src, rx, mbus_link::reply_timeout(baud, 1).count(), progress);
  if (st != mbus_link::Receiver::Status::frame) {
    error = st == mbus_link::Receiver::Status::garbage ? "garbled answer to SND_NKE: " + rx.error()
                                                      : "no answer to SND_NKE";
    return false;
  }
  auto f = rx.frame();
  if (f.size() != 1 || f[0] != 0xE5) {
    error = "unexpected answer to SND_NKE";
    return false;
  }
  return true;
}

PollResult read(acquire::ByteSource& src, uint8_t address, unsigned baud, mbus_link::FcbState& fcb,
                int max_frames, const Progress& progress) {
  PollResult res;
  int repeats = 0;
  for (int i = 0; i < max_frames;) {
    if (!send(src, fcb.request(address))) {
      res.error = "cannot write to " + src.describe();
      return res;
    }
    mbus_link::Receiver rx;
    auto st = receive(src, rx, mbus_link::reply_timeout(baud).count(), progress);
    if (st != mbus_link::Receiver::Status::frame) {
      if (repeats++ < 1) continue;  // same request, same FCB, once more
      if (st == mbus_link::Receiver::Status::garbage) res.error = "garbled reply: " + rx.error();
      else res.error = rx.buffered() ? "reply cut off (timeout)" : "no answer to REQ_UD2";
      return res;
    }
    repeats = 0;
    ++i;
    auto fr = rx.frame();
    fcb.reply_received();
    auto dec = mbus::decode(fr);
    res.frames.emplace_back(reinterpret_cast<const char*>(fr.data()), fr.size());
    if (!dec.ok() || !mbus_link::more_records_follow(dec.frame)) return res;
  }
  return res;
}

}  // namespace mp::mbus_poll
