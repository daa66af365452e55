// (Not named worker_*.cpp: those are the wiring of worker executables, kept out of the
// component library.)
#include "supervisor/bin_dir.h"

#include <unistd.h>

#include <vector>

#include "supervisor/supervisor.h"

#ifndef MP_WORKER_REL_DIR
#define MP_WORKER_REL_DIR "../lib/meterpipe"
#endif

namespace mp::supervisor {

namespace {

// "/usr/bin/../lib/meterpipe" -> "/usr/lib/meterpipe" (lexically; no symlinks resolved)
std::string normalise(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string part = path.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..")
        parts.pop_back();
      else if (path[0] != '/')
        parts.push_back(part);
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out = path[0] == '/' ? "/" : "";
  for (size_t k = 0; k < parts.size(); ++k) out += (k ? "/" : "") + parts[k];
  return out.empty() ? "." : out;
}

}  // namespace

std::string choose_worker_dir(const std::string& exe_dir, const std::string& relative) {
  if (access((exe_dir + "/meterpipe-acquire").c_str(), X_OK) == 0) return exe_dir;
  if (!relative.empty() && relative[0] == '/') return normalise(relative);
  return normalise(exe_dir + "/" + relative);
}

std::string default_worker_dir() { return choose_worker_dir(self_dir(), MP_WORKER_REL_DIR); }

}  // namespace mp::supervisor
