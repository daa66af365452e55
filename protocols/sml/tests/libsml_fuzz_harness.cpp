// A libFuzzer harness for libsml itself (not part of the build or of scripts/fuzz: it exists
// to answer whether the product could depend on libsml; protocols/sml/README.md has the
// result). Feeds arbitrary bytes to libsml's sml_file_parse the way sml_server does.
// Build and run by hand (Debian's libsml.so.1 is not instrumented, so libFuzzer sees no
// coverage inside it and ASan catches crashes and allocator misuse only):
//   clang++ -std=c++20 -g -fsanitize=fuzzer,address,undefined -I. \
//     protocols/sml/tests/libsml_fuzz_harness.cpp -ldl -o /tmp/fuzz_libsml
//   /tmp/fuzz_libsml -max_total_time=300 protocols/sml/fuzz/corpus
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "protocols/sml/tests/libsml_oracle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const mp::sml::oracle::LibSml lib;
  if (!lib.ok()) std::abort();
  std::vector<mp::sml::oracle::Entry> out;
  mp::sml::oracle::entries(lib, std::string(reinterpret_cast<const char*>(data), size), out);
  return 0;
}
