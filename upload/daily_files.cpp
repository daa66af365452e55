#include "upload/daily_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "common/log.h"

namespace mp::upload {

DailyFiles::~DailyFiles() { close(); }

std::string DailyFiles::file_name(int64_t time_ns) {
  int64_t secs = time_ns / 1000000000;
  if (time_ns % 1000000000 < 0) --secs;
  time_t t = static_cast<time_t>(secs);
  tm g{};
  if (!gmtime_r(&t, &g)) return "invalid-date.lp";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d.lp", g.tm_year + 1900, g.tm_mon + 1, g.tm_mday);
  return buf;
}

bool DailyFiles::open(const std::string& data_dir, std::string& error) {
  close();
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (!std::filesystem::is_directory(data_dir, ec)) {
    error = "cannot create data directory " + data_dir;
    return false;
  }
  dir_ = data_dir;
  return true;
}

void DailyFiles::close() {
  sync();
  for (auto& s : slots_) {
    if (s.fd >= 0) ::close(s.fd);
    s = Slot{};
  }
  dir_.clear();
}

DailyFiles::Slot* DailyFiles::slot_for(const std::string& name) {
  for (auto& s : slots_)
    if (s.fd >= 0 && s.name == name) {
      // The retention pass (day_retention.h) may have compressed and unlinked an old day's
      // file that this slot still holds (late points): lines written on would be lost, so
      // open the name again (a new file, which the next pass adds to the .gz).
      struct stat st;
      if (::fstat(s.fd, &st) == 0 && st.st_nlink == 0) {
        ::close(s.fd);
        s = Slot{};
        break;
      }
      s.used = ++stamp_;
      return &s;
    }
  Slot* victim = &slots_[0];
  for (auto& s : slots_)
    if (s.fd < 0 || s.used < victim->used) victim = &s;
  if (victim->fd >= 0) {
    if (victim->dirty) {
      ::fdatasync(victim->fd);
      ++st_.fsyncs;
    }
    ::close(victim->fd);
    victim->fd = -1;
  }
  std::string path = dir_ + "/" + name;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    log::error("daily files: cannot open %s: %s", path.c_str(), std::strerror(errno));
    return nullptr;
  }
  *victim = Slot{name, fd, false, ++stamp_};
  return victim;
}

bool DailyFiles::append(std::string_view line, int64_t point_time_ns) {
  if (dir_.empty() || line.empty() || line.find_first_of("\r\n") != std::string_view::npos)
    return false;
  Slot* s = slot_for(file_name(point_time_ns));
  if (!s) {
    ++st_.write_errors;
    return false;
  }
  std::string rec;
  rec.reserve(line.size() + 1);
  rec.append(line);
  rec += '\n';
  // O_APPEND: one write per line keeps lines whole even if another writer shares the file.
  ssize_t n = ::write(s->fd, rec.data(), rec.size());
  if (n != static_cast<ssize_t>(rec.size())) {
    ++st_.write_errors;
    return false;
  }
  s->dirty = true;
  ++st_.points;
  st_.bytes += rec.size();
  return true;
}

bool DailyFiles::maybe_sync(int64_t now_ns) {
  bool dirty = false;
  for (auto& s : slots_) dirty |= s.dirty;
  if (!dirty) return false;
  if (last_sync_ns_ != 0 && now_ns - last_sync_ns_ < 1000000000) return false;
  sync();
  last_sync_ns_ = now_ns;
  return true;
}

void DailyFiles::sync() {
  for (auto& s : slots_)
    if (s.fd >= 0 && s.dirty) {
      ::fdatasync(s.fd);
      ++st_.fsyncs;
      s.dirty = false;
    }
}

}  // namespace mp::upload
