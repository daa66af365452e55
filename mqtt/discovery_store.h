// Which retained Home Assistant discovery configs this installation has published, kept in
// a small text file (<state_dir>/mqtt.discovery, one "meter|relay NAME TOPIC" per line) so
// that a meter or relay removed from the config gets its configs cleared at the next start.
#pragma once

#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace mp::mqtt {

struct DiscoveryEntry {
  std::string kind;  // "meter" | "relay"
  std::string name;
  std::string topic;
  bool operator<(const DiscoveryEntry& o) const {
    return std::tie(kind, name, topic) < std::tie(o.kind, o.name, o.topic);
  }
};

class DiscoveryStore {
 public:
  explicit DiscoveryStore(std::string path) : path_(std::move(path)) {}

  // Reads the file (a missing file is an empty store; unreadable lines are skipped).
  void load();
  // True when the entry is new (the file is then rewritten).
  bool add(const DiscoveryEntry& e);
  // Removes and returns the entries `keep` refuses (their configs are to be cleared).
  template <class Keep>
  std::vector<DiscoveryEntry> remove_unless(Keep keep) {
    std::vector<DiscoveryEntry> gone;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (keep(*it)) {
        ++it;
      } else {
        gone.push_back(*it);
        it = entries_.erase(it);
      }
    }
    if (!gone.empty()) save();
    return gone;
  }
  const std::set<DiscoveryEntry>& entries() const { return entries_; }
  // Last write error ("" when fine).
  const std::string& error() const { return error_; }

 private:
  void save();

  std::string path_;
  std::set<DiscoveryEntry> entries_;
  std::string error_;
};

}  // namespace mp::mqtt
