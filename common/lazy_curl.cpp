#include "common/lazy_curl.h"

#include <dlfcn.h>

namespace mp {

namespace {

constexpr const char* kLibrary = "libcurl.so.4";  // the soname of every libcurl 7 and 8

template <typename F>
bool resolve(void* lib, const char* name, F& f, std::string& error) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (!f) error = std::string(kLibrary) + " has no " + name;
  return f != nullptr;
}

struct Loaded {
  Curl c{};
  std::string error;
  bool ok = false;
  Loaded() {
    void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      error = "cannot load " + std::string(kLibrary) + " " + (e ? e : "unknown");
      return;
    }
    ok = resolve(lib, "curl_global_init", c.global_init, error) &&
         resolve(lib, "curl_easy_init", c.easy_init, error) &&
         resolve(lib, "curl_easy_setopt", c.easy_setopt, error) &&
         resolve(lib, "curl_easy_perform", c.easy_perform, error) &&
         resolve(lib, "curl_easy_getinfo", c.easy_getinfo, error) &&
         resolve(lib, "curl_easy_cleanup", c.easy_cleanup, error) &&
         resolve(lib, "curl_easy_strerror", c.easy_strerror, error) &&
         resolve(lib, "curl_easy_escape", c.easy_escape, error) &&
         resolve(lib, "curl_free", c.free, error) &&
         resolve(lib, "curl_slist_append", c.slist_append, error) &&
         resolve(lib, "curl_slist_free_all", c.slist_free_all, error);
    if (ok && c.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      error = std::string(kLibrary) + ": curl_global_init failed";
      ok = false;
    }
  }
};

}  // namespace

const Curl* curl(std::string& error) {
  static const Loaded loaded;  // the library stays loaded for the process's life
  if (!loaded.ok) error = loaded.error;
  return loaded.ok ? &loaded.c : nullptr;
}

}  // namespace mp
