// A shared library opened at run time by its soname, for the libraries only some boxes need
// (libcrypto for encrypted P1: protocols/dsmr/lazy_crypto.h; libcurl for InfluxDB and HTTP
// relays: common/lazy_curl.h): a box that never needs one never maps it (docs/ARCHITECTURE.md,
// "Threading": a box's footprint). Opened once and never closed.
#pragma once

#include <string>

namespace mp {

class DynamicLibrary {
 public:
  // dlopen (RTLD_NOW | RTLD_LOCAL); false with `error` naming the library and `what` it is
  // loaded for.
  bool open(const char* soname, const std::string& what, std::string& error);

  // The function `name` into `f` (a function pointer type); false with `error` when missing.
  template <typename F>
  bool resolve(const char* name, F& f, std::string& error) const {
    f = reinterpret_cast<F>(symbol(name));
    if (!f) error = soname_ + " has no " + name;
    return f != nullptr;
  }

 private:
  void* symbol(const char* name) const;

  void* lib_ = nullptr;
  std::string soname_;
};

}  // namespace mp
