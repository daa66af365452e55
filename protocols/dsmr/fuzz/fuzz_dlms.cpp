// libFuzzer: encrypted P1 frames (DLMS general-glo-ciphering) and the frame splitter.
#include <cstddef>
#include <cstdint>
#include <string>

#include "protocols/dsmr/dlms.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mp::dlms::Keys keys;
  for (size_t i = 0; i < keys.encryption.size(); ++i) keys.encryption[i] = uint8_t(i * 7 + 1);
  std::string plain, err;
  mp::dlms::decrypt(data, size, keys, plain, err);
  mp::dlms::FrameSplitter split;
  split.feed(data, size);
  std::string frame;
  while (split.pop(frame)) mp::dlms::decrypt(frame, keys, plain, err);
  mp::dlms::Keys parsed;
  mp::dlms::parse_key_file(std::string_view(reinterpret_cast<const char*>(data), size), parsed, err);
  return 0;
}
