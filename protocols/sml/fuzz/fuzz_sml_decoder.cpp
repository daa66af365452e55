// libFuzzer target: the SML message decoder on arbitrary payloads (as if a frame with a good
// CRC carried them), then the mapping to readings; and the same bytes as a whole frame.
#include <cstddef>
#include <cstdint>
#include <string>

#include "protocols/sml/sml.h"
#include "protocols/sml/sml_transport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mp::sml::File file;
  std::string err;
  // Seeds are whole frames: fuzz their payloads (unwrap ignores a bad CRC here: wrap anew).
  mp::sml::Transport t;
  std::string payload(reinterpret_cast<const char*>(data), size);
  if (mp::sml::unwrap({data, size}, t, err)) payload = t.payload;
  mp::sml::decode_messages({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, file,
                           err);
  mp::Reading r;
  mp::sml::to_reading(file, r);  // what was decoded before an error is named too
  const std::string frame = mp::sml::wrap(payload);
  mp::sml::decode_frame({reinterpret_cast<const uint8_t*>(frame.data()), frame.size()}, file, err);
  mp::sml::decode_frame({data, size}, file, err);
  return 0;
}
