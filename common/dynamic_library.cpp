#include "common/dynamic_library.h"

#include <dlfcn.h>

namespace mp {

bool DynamicLibrary::open(const char* soname, const std::string& what, std::string& error) {
  soname_ = soname;
  lib_ = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (lib_) return true;
  const char* e = dlerror();
  error = "cannot load " + soname_ + " for " + what + ": " + (e ? e : "unknown error");
  return false;
}

void* DynamicLibrary::symbol(const char* name) const { return lib_ ? dlsym(lib_, name) : nullptr; }

}  // namespace mp
