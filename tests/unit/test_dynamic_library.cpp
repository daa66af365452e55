// common/dynamic_library: what the lazily loaded libraries (libcrypto, libcurl) rest on.
#include <doctest/doctest.h>

#include <cstddef>
#include <string>

#include "common/dynamic_library.h"

TEST_CASE("dynamic library: a missing library or function is an error that names it") {
  std::string error;
  mp::DynamicLibrary none;
  CHECK_FALSE(none.open("libmeterpipe-no-such-library.so.9", "a test", error));
  CHECK(error.rfind("cannot load libmeterpipe-no-such-library.so.9 for a test: ", 0) == 0);

  mp::DynamicLibrary libc;
  error.clear();
  REQUIRE_MESSAGE(libc.open("libc.so.6", "a test", error), error);
  size_t (*length)(const char*) = nullptr;
  REQUIRE(libc.resolve("strlen", length, error));
  CHECK(length("meter") == 5);
  void (*missing)() = nullptr;
  CHECK_FALSE(libc.resolve("meterpipe_no_such_function", missing, error));
  const bool found = missing != nullptr;
  CHECK_FALSE(found);
  CHECK(error == "libc.so.6 has no meterpipe_no_such_function");
}
