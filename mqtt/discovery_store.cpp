#include "mqtt/discovery_store.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace mp::mqtt {

void DiscoveryStore::load() {
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    DiscoveryEntry e;
    if (!(ls >> e.kind >> e.name) || !std::getline(ls >> std::ws, e.topic) || e.topic.empty())
      continue;
    if (e.kind != "meter" && e.kind != "relay") continue;
    entries_.insert(e);
  }
}

bool DiscoveryStore::add(const DiscoveryEntry& e) {
  if (!entries_.insert(e).second) return false;
  save();
  return true;
}

void DiscoveryStore::save() {
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& e : entries_) out << e.kind << ' ' << e.name << ' ' << e.topic << '\n';
    out.flush();
    if (!out) {
      error_ = "cannot write " + tmp + ": " + std::strerror(errno);
      return;
    }
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    error_ = "cannot rename " + tmp + ": " + std::strerror(errno);
    return;
  }
  error_.clear();
}

}  // namespace mp::mqtt
