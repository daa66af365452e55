// process's bus positions file (docs/ARCHITECTURE.md, "Durability").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "bus/bus.h"

namespace mp::process {

// Where this worker got to, kept in run_dir (tmpfs: no SD wear): a restarted process asks
// acquire's replay ring for the frames after it (docs/ARCHITECTURE.md, "Durability"). Per
// topic, the last frame that ended a poll (a position inside a multi-frame Modbus or M-Bus
// poll would make a restarted process decode that poll without its first blocks), and the
// file gets the positions of one save earlier (about a second old): a reading published just
// before a hang may still wait in the bus's send queue when the process is killed, so a
// restarted process decodes the last second's frames again.
class Positions {
 public:
  using Map = std::map<bus::Subscriber::Key, bus::Subscriber::TopicState>;
  Positions(std::string file, const Map& restored) : file_(std::move(file)), done_(restored) {
    earlier_ = done_;
  }
  void decoded(const bus::Message& m) {
    auto& st = done_[{m.env.publisher(), m.topic}];
    st.instance = m.env.instance_id();
    st.last_seq = m.env.seq();
    ++version_;
  }
  // At most once a second: writes the snapshot of the last save, takes a new one.
  void save_when_due(int64_t now_mono) {
    if (now_mono - last_save_ < 1000000000LL) return;
    if (version_ == earlier_version_ && earlier_version_ == written_version_) return;
    // (nothing to write before a first frame; a failed write is tried again next time)
    if (earlier_version_ != written_version_ &&
        (earlier_.empty() || bus::Subscriber::save_positions(file_, earlier_, false)))
      written_version_ = earlier_version_;
    earlier_ = done_;
    earlier_version_ = version_;
    last_save_ = now_mono;
  }

 private:
  std::string file_;
  Map done_, earlier_;
  uint64_t version_ = 0, earlier_version_ = 0, written_version_ = 0;
  int64_t last_save_ = 0;
};

}  // namespace mp::process
