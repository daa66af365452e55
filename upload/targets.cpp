#include "upload/targets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/log.h"

namespace mp::upload {

WriteResult InfluxTarget::deliver(const std::vector<Point>& points, size_t begin, size_t end) {
  body_.clear();
  for (size_t i = begin; i < end; ++i) {
    body_ += points[i].line;
    body_ += '\n';
  }
  return client_.write(body_);
}

bool InfluxTarget::probe() {
  const long st = client_.ping();
  return st >= 200 && st < 300;
}

bool FileTarget::open(const std::string& data_dir, std::string& error, size_t tail_bytes) {
  dir_ = data_dir;
  if (!files_.open(data_dir, error)) return false;
  load_tails(tail_bytes);
  return true;
}

void FileTarget::load_tails(size_t tail_bytes) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() == 13 && n.compare(10, 3, ".lp") == 0) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  if (names.size() > 2) names.erase(names.begin(), names.end() - 2);
  for (const auto& n : names) {
    const std::string path = dir_ + "/" + n;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      const off_t size = st.st_size;
      const off_t from = size > off_t(tail_bytes) ? size - off_t(tail_bytes) : 0;
      std::string buf(size_t(size - from), '\0');
      const ssize_t got = ::pread(fd, buf.data(), buf.size(), from);
      buf.resize(got > 0 ? size_t(got) : 0);
      size_t pos = 0;
      if (from > 0) pos = buf.find('\n') == std::string::npos ? buf.size() : buf.find('\n') + 1;
      while (pos < buf.size()) {
        size_t nl = buf.find('\n', pos);
        if (nl == std::string::npos) break;  // a torn last line: no point matches it
        recent_.insert(buf.substr(pos, nl - pos));
        pos = nl + 1;
      }
    }
    ::close(fd);
  }
}

WriteResult FileTarget::deliver(const std::vector<Point>& points, size_t begin, size_t end) {
  WriteResult r;
  r.cls = WriteClass::ok;
  std::lock_guard<std::mutex> l(files_mu_);
  for (size_t i = begin; i < end; ++i) {
    if (!recent_.empty() && recent_.erase(points[i].line)) {
      ++skipped_;
      continue;
    }
    if (!files_.append(points[i].line, points[i].time_ns)) {
      r.cls = WriteClass::retry;
      r.message =
          "cannot write to " + dir_ + ": " + std::strerror(errno) + " (disk full or failing?)";
      // the batch is retried whole: the lines this call did write are skipped then
      for (size_t j = begin; j < i; ++j) recent_.insert(points[j].line);
      return r;
    }
  }
  return r;
}

void FileTarget::make_durable() {
  std::lock_guard<std::mutex> l(files_mu_);
  files_.sync();
}

}  // namespace mp::upload
