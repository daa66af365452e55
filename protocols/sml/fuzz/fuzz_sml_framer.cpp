// libFuzzer target: the SML transport framer on arbitrary bytes in arbitrary chunks, every
// frame it delivers decoded. Checks the memory bound, that delivered frames are whole
// transport frames with a good CRC, and that every byte is accounted for.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "protocols/sml/sml.h"
#include "protocols/sml/sml_transport.h"

namespace {
void use(const std::string& f, uint64_t& delivered) {
  mp::sml::Transport t;
  std::string err;
  const auto* p = reinterpret_cast<const uint8_t*>(f.data());
  if (f.size() > mp::sml::Framer::kMaxFrame || !mp::sml::unwrap({p, f.size()}, t, err)) {
    // the framer delivers only frames whose CRC matches; an unknown escape cannot get through
    std::abort();
  }
  mp::sml::File file;
  if (mp::sml::decode_frame({p, f.size()}, file, err)) {
    mp::Reading r;
    mp::sml::to_reading(file, r);
  }
  delivered += f.size();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 64;  // the same stream in different pieces
  ++data;
  --size;
  mp::sml::Framer fr;
  uint64_t delivered = 0;
  std::string f;
  for (size_t i = 0; i < size; i += chunk) {
    fr.feed(data + i, size - i < chunk ? size - i : chunk);
    if (fr.buffered() > mp::sml::Framer::kMaxFrame + 8) std::abort();
    while (fr.pop(f)) use(f, delivered);
  }
  if (fr.counters().discarded_bytes + delivered + fr.buffered() != size) std::abort();
  return 0;
}
