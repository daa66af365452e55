// libFuzzer target: the DSMR framer on arbitrary bytes in arbitrary chunks. Checks the memory
// bound, that delivered telegrams start with '/', and that every byte is accounted for.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "protocols/dsmr/dsmr_framer.h"
#include "protocols/dsmr/dsmr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the chunk size, so the same stream is fed in different pieces.
  size_t chunk = 1 + data[0] % 64;
  ++data;
  --size;
  mp::dsmr::Framer f;
  uint64_t delivered = 0;
  std::string t;
  mp::dsmr::Result r;
  for (size_t i = 0; i < size; i += chunk) {
    f.feed(data + i, size - i < chunk ? size - i : chunk);
    if (f.buffered() > mp::dsmr::Framer::kMaxFrame) std::abort();
    while (f.pop(t)) {
      if (t.empty() || t[0] != '/' || t.size() > mp::dsmr::Framer::kMaxFrame) std::abort();
      delivered += t.size();
      mp::dsmr::decode(t, r);
    }
  }
  // End of input: a telegram ending right after its CRC digits is delivered.
  if (f.finish() && f.in_telegram()) std::abort();
  while (f.pop(t)) {
    if (t.empty() || t[0] != '/' || t.size() > mp::dsmr::Framer::kMaxFrame) std::abort();
    delivered += t.size();
    mp::dsmr::decode(t, r);
  }
  const auto& c = f.counters();
  if (c.discarded_bytes + delivered + f.buffered() != size) std::abort();
  return 0;
}
