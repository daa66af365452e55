#include "common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mp::fs {

bool read_file(const std::string& path, std::string& out, std::string& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  out.clear();
  // on the heap: callers include civetweb's request threads, whose stacks are small
  std::string chunk(65536, '\0');
  char* buf = chunk.data();
  while (true) {
    const ssize_t n = ::read(fd, buf, chunk.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      error = "cannot read " + path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return true;
}

bool write_all(int fd, std::string_view data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += size_t(n);
  }
  return true;
}

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool fsync_dir(const std::string& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return false;
  const bool ok = ::fsync(dfd) == 0;
  const int saved = errno;
  ::close(dfd);
  errno = saved;
  return ok;
}

bool atomic_replace(const std::string& path, std::string_view data, std::string& error,
                    bool durable, unsigned mode) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    error = "cannot create " + tmp + ": " + std::strerror(errno);
    return false;
  }
  const bool written = write_all(fd, data) && (!durable || ::fsync(fd) == 0);
  const int saved = errno;
  if (::close(fd) != 0 || !written) {
    error = "cannot write " + tmp + ": " + std::strerror(written ? errno : saved);
    ::unlink(tmp.c_str());
    return false;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot rename " + tmp + " to " + path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  if (durable && !fsync_dir(dir_of(path))) {
    error = "cannot fsync the directory of " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

bool overwrite_in_place(const std::string& path, std::string_view data, std::string& error,
                        unsigned mode) {
  constexpr size_t kPage = 4096;  // the smallest page size of the machines we run on
  if (data.size() > kPage) return atomic_replace(path, data, error, false, mode);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, mode);
  if (fd < 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < 0 || static_cast<size_t>(st.st_size) > kPage) {
    ::close(fd);
    return atomic_replace(path, data, error, false, mode);
  }
  std::string padded(data);
  padded.resize(std::max(data.size(), static_cast<size_t>(st.st_size)), ' ');
  const ssize_t n = ::pwrite(fd, padded.data(), padded.size(), 0);
  const int saved = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(padded.size())) {
    // a short write (a full disk) left a mix: let atomic_replace write it whole
    if (n >= 0) return atomic_replace(path, data, error, false, mode);
    error = "cannot write " + path + ": " + std::strerror(saved);
    return false;
  }
  return true;
}

}  // namespace mp::fs
