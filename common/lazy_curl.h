// libcurl, loaded when the first HTTP relay output (actuate/outputs.h) or InfluxDB client
// (upload/influx.h) is made: a box whose relays switch GPIO lines, commands or nothing (sim)
// and that uploads to daily files does not map libcurl and what it pulls in (libcrypto,
// GnuTLS, ...: about 5 MB resident per process; docs/ARCHITECTURE.md, "Threading": a
// box's footprint). The same pattern as protocols/dsmr/lazy_crypto.h.
#pragma once

#include <curl/curl.h>

#include <string>

namespace mp {

struct Curl {
  decltype(&curl_global_init) global_init;
  decltype(&curl_easy_init) easy_init;
  decltype(&curl_easy_setopt) easy_setopt;
  decltype(&curl_easy_perform) easy_perform;
  decltype(&curl_easy_getinfo) easy_getinfo;
  decltype(&curl_easy_cleanup) easy_cleanup;
  decltype(&curl_easy_strerror) easy_strerror;
  decltype(&curl_easy_escape) easy_escape;
  decltype(&curl_free) free;
  decltype(&curl_slist_append) slist_append;
  decltype(&curl_slist_free_all) slist_free_all;
};

// libcurl's functions, loaded and globally initialised once (thread-safe); nullptr with
// `error` set when the library or one of its functions cannot be loaded.
const Curl* curl(std::string& error);

}  // namespace mp
