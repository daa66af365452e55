#include "common/lazy_curl.h"

#include "common/dynamic_library.h"

namespace mp {

namespace {

struct Loaded {
  Curl c{};
  std::string error;
  bool ok = false;
  Loaded() {
    DynamicLibrary lib;
    if (!lib.open("libcurl.so.4", "HTTP", error)) return;  // the soname of libcurl 7 and 8
    ok = lib.resolve("curl_global_init", c.global_init, error) &&
         lib.resolve("curl_easy_init", c.easy_init, error) &&
         lib.resolve("curl_easy_setopt", c.easy_setopt, error) &&
         lib.resolve("curl_easy_perform", c.easy_perform, error) &&
         lib.resolve("curl_easy_getinfo", c.easy_getinfo, error) &&
         lib.resolve("curl_easy_cleanup", c.easy_cleanup, error) &&
         lib.resolve("curl_easy_strerror", c.easy_strerror, error) &&
         lib.resolve("curl_easy_escape", c.easy_escape, error) &&
         lib.resolve("curl_free", c.free, error) &&
         lib.resolve("curl_slist_append", c.slist_append, error) &&
         lib.resolve("curl_slist_free_all", c.slist_free_all, error);
    if (ok && c.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      error = "libcurl.so.4: curl_global_init failed";
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
