#include "upload/day_retention.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>

namespace mp::upload {

namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr int64_t kDayNs = 86400LL * 1000000000LL;

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

bool write_all(int fd, const unsigned char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return false;
    }
    p += w;
    n -= size_t(w);
  }
  return true;
}

ssize_t read_some(int fd, unsigned char* p, size_t n) {
  for (;;) {
    ssize_t r = ::read(fd, p, n);
    if (r >= 0 || errno != EINTR) return r;
  }
}

// Reads exactly n bytes at offset (false on a short read or an error).
bool pread_full(int fd, unsigned char* p, size_t n, uint64_t off) {
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= size_t(r);
    off += uint64_t(r);
  }
  return true;
}

int digits(std::string_view s, size_t pos, size_t n) {
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

// "YYYY-MM-DD" at the start of `s` (exactly 10 characters used) to a UTC day number.
bool parse_date(std::string_view s, int64_t& day) {
  if (s.size() < 10 || s[4] != '-' || s[7] != '-') return false;
  int y = digits(s, 0, 4), m = digits(s, 5, 2), d = digits(s, 8, 2);
  if (y < 1 || m < 1 || d < 1) return false;
  using namespace std::chrono;
  const year_month_day ymd{year{y}, month{unsigned(m)}, std::chrono::day{unsigned(d)}};
  if (!ymd.ok()) return false;
  day = sys_days{ymd}.time_since_epoch().count();
  return true;
}

std::string mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
  return buf;
}

enum class Outcome { ok, error, aborted };

struct DayFiles {
  bool lp = false, gz = false;
};

class Pass {
 public:
  Pass(const std::string& dir, const RetentionOptions& opt, RetentionStats& st)
      : dir_(dir), opt_(opt), st_(st), in_(kChunk), out_(kChunk), cmp_(kChunk) {}

  void run(int64_t today);

 private:
  bool keep_going() {
    if (st_.aborted) return false;
    if (opt_.keep_going && !opt_.keep_going()) st_.aborted = true;
    return !st_.aborted;
  }
  void error(const std::string& what, const std::string& name, int err) {
    st_.errors.push_back(what + " " + dir_ + "/" + name + ": " + std::strerror(err));
  }
  void error_text(const std::string& text) { st_.errors.push_back(text); }
  bool sync_dir();
  bool is_regular(const std::string& name, struct stat* st = nullptr);

  void compress_day(const std::string& date);
  Outcome deflate_into(int src, int dst, uint64_t& plain, uint64_t& packed, std::string& err);
  Outcome copy_into(int src, int dst, std::string& err);
  using Sink = std::function<void(const unsigned char*, size_t, uint64_t)>;
  Outcome inflate_all(int fd, const Sink& sink, uint64_t& total, bool& valid, std::string& err);
  enum class Build { fresh, append };
  bool write_gz(const std::string& date, Build how, int lp_fd, int gz_fd, const struct stat& lp_st);
  bool remove_lp(const std::string& date, const struct stat& lp_st, uint64_t size);

  const std::string& dir_;
  const RetentionOptions& opt_;
  RetentionStats& st_;
  Fd dfd_;
  std::vector<unsigned char> in_, out_, cmp_;
};

bool Pass::is_regular(const std::string& name, struct stat* out) {
  struct stat st;
  if (::fstatat(dfd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
  if (out) *out = st;
  return S_ISREG(st.st_mode);
}

bool Pass::sync_dir() {
  if (::fsync(dfd_.get()) == 0) return true;
  error("cannot fsync", ".", errno);
  return false;
}

void Pass::run(int64_t today) {
  dfd_.reset(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd_.ok()) {
    st_.errors.push_back("cannot open " + dir_ + ": " + std::strerror(errno));
    return;
  }
  // The listing first (a snapshot): the loops below change the directory.
  std::map<std::string, DayFiles> days;  // "YYYY-MM-DD" -> files; sorted = oldest first
  std::map<std::string, int64_t> day_of;
  std::vector<std::string> temps;
  {
    int fd2 = ::dup(dfd_.get());
    DIR* d = fd2 >= 0 ? ::fdopendir(fd2) : nullptr;
    if (!d) {
      if (fd2 >= 0) ::close(fd2);
      st_.errors.push_back("cannot list " + dir_ + ": " + std::strerror(errno));
      return;
    }
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      int64_t day = 0;
      const DayFileKind kind = parse_day_file(name, &day);
      if (kind == DayFileKind::none || !is_regular(name)) continue;
      if (kind == DayFileKind::temp) {
        temps.push_back(name);
        continue;
      }
      const std::string date = name.substr(0, 10);
      day_of[date] = day;
      (kind == DayFileKind::lp ? days[date].lp : days[date].gz) = true;
    }
    ::closedir(d);
  }

  // 1. Leftovers of an interrupted pass: never a complete file (the rename did not happen).
  for (const auto& t : temps) {
    if (::unlinkat(dfd_.get(), t.c_str(), 0) == 0)
      ++st_.temp_removed;
    else if (errno != ENOENT)
      error("cannot remove", t, errno);
  }

  // 2. Deletion. D < today - keep_days; keep_days >= 1 therefore never reaches today or
  // yesterday (the files the writer may have open).
  bool deleted_any = false;
  if (opt_.keep_days > 0) {
    const int64_t oldest_kept = today - opt_.keep_days;
    for (auto it = days.begin(); it != days.end();) {
      if (day_of[it->first] >= oldest_kept) {
        ++it;
        continue;
      }
      bool all_gone = true;
      for (const bool gz : {false, true}) {
        if (!(gz ? it->second.gz : it->second.lp)) continue;
        const std::string name = it->first + (gz ? ".lp.gz" : ".lp");
        struct stat st;
        const bool have = is_regular(name, &st);
        if (have && ::unlinkat(dfd_.get(), name.c_str(), 0) == 0) {
          ++st_.deleted;
          st_.deleted_bytes += uint64_t(st.st_size);
          deleted_any = true;
        } else if (have && errno != ENOENT) {
          error("cannot delete", name, errno);
          all_gone = false;
        }
      }
      it = all_gone ? days.erase(it) : std::next(it);
    }
  }
  if (deleted_any || st_.temp_removed) sync_dir();

  // 3. Compression of finished days, oldest first.
  if (opt_.compress) {
    for (const auto& [date, files] : days) {
      if (!files.lp || day_of[date] > today - 2) continue;
      if (!keep_going()) break;
      compress_day(date);
      if (st_.aborted) break;
    }
  }
}

Outcome Pass::deflate_into(int src, int dst, uint64_t& plain, uint64_t& packed, std::string& err) {
  z_stream zs{};
  if (deflateInit2(&zs, opt_.level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    err = "zlib deflateInit2 failed";
    return Outcome::error;
  }
  struct End {
    z_stream* z;
    ~End() { deflateEnd(z); }
  } end{&zs};
  for (bool eof = false; !eof;) {
    if (!keep_going()) return Outcome::aborted;
    const ssize_t n = read_some(src, in_.data(), in_.size());
    if (n < 0) {
      err = std::string("read: ") + std::strerror(errno);
      return Outcome::error;
    }
    eof = n == 0;
    plain += uint64_t(n);
    zs.next_in = in_.data();
    zs.avail_in = uInt(n);
    const int flush = eof ? Z_FINISH : Z_NO_FLUSH;
    for (;;) {
      zs.next_out = out_.data();
      zs.avail_out = uInt(out_.size());
      const int rc = deflate(&zs, flush);
      if (rc == Z_STREAM_ERROR) {
        err = "zlib deflate failed";
        return Outcome::error;
      }
      const size_t have = out_.size() - zs.avail_out;
      if (have && !write_all(dst, out_.data(), have)) {
        err = std::string("write: ") + std::strerror(errno);
        return Outcome::error;
      }
      packed += have;
      if (flush == Z_FINISH ? rc == Z_STREAM_END : zs.avail_out != 0) break;
    }
  }
  return Outcome::ok;
}

Outcome Pass::copy_into(int src, int dst, std::string& err) {
  if (::lseek(src, 0, SEEK_SET) != 0) {
    err = std::string("seek: ") + std::strerror(errno);
    return Outcome::error;
  }
  for (;;) {
    if (!keep_going()) return Outcome::aborted;
    const ssize_t n = read_some(src, in_.data(), in_.size());
    if (n < 0) {
      err = std::string("read: ") + std::strerror(errno);
      return Outcome::error;
    }
    if (n == 0) return Outcome::ok;
    if (!write_all(dst, in_.data(), size_t(n))) {
      err = std::string("write: ") + std::strerror(errno);
      return Outcome::error;
    }
  }
}

// Decompresses every gzip member of `fd` (from its start) in order and hands the output to
// sink(data, n, offset). valid: the file is one or more complete members and nothing else;
// otherwise `total` counts the bytes that could be read before the damage.
Outcome Pass::inflate_all(int fd, const Sink& sink, uint64_t& total, bool& valid,
                          std::string& err) {
  total = 0;
  valid = false;
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    err = std::string("seek: ") + std::strerror(errno);
    return Outcome::error;
  }
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) {
    err = "zlib inflateInit2 failed";
    return Outcome::error;
  }
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&zs};
  bool in_member = false, damaged = false;
  uint64_t members = 0;
  while (!damaged) {
    if (!keep_going()) return Outcome::aborted;
    const ssize_t n = read_some(fd, in_.data(), in_.size());
    if (n < 0) {
      err = std::string("read: ") + std::strerror(errno);
      return Outcome::error;
    }
    if (n == 0) break;
    zs.next_in = in_.data();
    zs.avail_in = uInt(n);
    do {
      zs.next_out = out_.data();
      zs.avail_out = uInt(out_.size());
      const int rc = inflate(&zs, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        damaged = true;  // Z_DATA_ERROR (also trailing garbage), Z_NEED_DICT, Z_MEM_ERROR
        break;
      }
      const size_t have = out_.size() - zs.avail_out;
      if (have) {
        sink(out_.data(), have, total);
        total += have;
      }
      if (rc == Z_BUF_ERROR) break;  // needs more input
      if (rc == Z_STREAM_END) {
        ++members;
        in_member = false;
        inflateReset(&zs);
      } else {
        in_member = true;
      }
    } while (zs.avail_in > 0 || zs.avail_out == 0);
  }
  valid = !damaged && !in_member && members > 0;
  return Outcome::ok;
}

// Writes `.DATE.lp.gz.tmp` (fresh: the .lp compressed; append: the existing .gz's bytes and
// then the .lp as a further member), fsyncs it and renames it to DATE.lp.gz. True when the
// .gz on disk now holds every byte of the .lp that was read.
bool Pass::write_gz(const std::string& date, Build how, int lp_fd, int gz_fd,
                    const struct stat& lp_st) {
  const std::string tmp = "." + date + ".lp.gz.tmp", gz = date + ".lp.gz";
  Fd out(::openat(dfd_.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                  0640));
  if (!out.ok()) {
    error("cannot create", tmp, errno);
    return false;
  }
  auto fail = [&](const std::string& text) {
    out.reset();
    ::unlinkat(dfd_.get(), tmp.c_str(), 0);
    if (!text.empty()) error_text(text);
    return false;
  };
  std::string err;
  Outcome o = Outcome::ok;
  if (how == Build::append) o = copy_into(gz_fd, out.get(), err);
  uint64_t plain = 0, packed = 0;
  if (o == Outcome::ok && ::lseek(lp_fd, 0, SEEK_SET) != 0) {
    err = std::string("seek: ") + std::strerror(errno);
    o = Outcome::error;
  }
  if (o == Outcome::ok) o = deflate_into(lp_fd, out.get(), plain, packed, err);
  if (o == Outcome::aborted) return fail("");
  if (o == Outcome::error) return fail("cannot compress " + dir_ + "/" + date + ".lp: " + err);
  // The same permissions and times as the .lp (ls shows when the day's last point came).
  (void)::fchmod(out.get(), lp_st.st_mode & 07777);
  const struct timespec times[2] = {lp_st.st_atim, lp_st.st_mtim};
  (void)::futimens(out.get(), times);
  if (::fsync(out.get()) != 0)
    return fail("cannot fsync " + dir_ + "/" + tmp + ": " + std::strerror(errno));
  out.reset();
  if (::renameat(dfd_.get(), tmp.c_str(), dfd_.get(), gz.c_str()) != 0)
    return fail("cannot rename " + dir_ + "/" + tmp + " to " + gz + ": " + std::strerror(errno));
  if (!sync_dir()) return false;  // the .gz may not be durable yet: keep the .lp
  ++st_.compressed;
  st_.plain_bytes += plain;
  st_.gz_bytes += packed;
  // Bytes read beyond the size seen at the start (a late point) are in the .gz too; the .lp
  // is removed only if it still has exactly the bytes that were compressed.
  remove_lp(date, lp_st, plain);
  return true;
}

// Unlinks DATE.lp when it is still the file that was read (same inode) and still `size` bytes
// long, under the writer's lock so that no line can be appended between that check and the
// unlink. (DailyFiles notices an unlinked file it holds open and opens a new one.)
bool Pass::remove_lp(const std::string& date, const struct stat& lp_st, uint64_t size) {
  const std::string lp = date + ".lp";
  std::unique_lock<std::mutex> lock;
  if (opt_.writer_mutex) lock = std::unique_lock<std::mutex>(*opt_.writer_mutex);
  struct stat now;
  if (::fstatat(dfd_.get(), lp.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) error("cannot stat", lp, errno);
    return false;
  }
  if (now.st_dev != lp_st.st_dev || now.st_ino != lp_st.st_ino || uint64_t(now.st_size) != size) {
    ++st_.deferred;  // it grew (or was replaced): the next pass compresses it again
    return false;
  }
  if (::unlinkat(dfd_.get(), lp.c_str(), 0) != 0) {
    error("cannot remove", lp, errno);
    return false;
  }
  if (lock) lock.unlock();
  sync_dir();
  return true;
}

void Pass::compress_day(const std::string& date) {
  const std::string lp = date + ".lp", gz = date + ".lp.gz";
  Fd lp_fd(::openat(dfd_.get(), lp.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!lp_fd.ok()) {
    if (errno != ENOENT) error("cannot open", lp, errno);
    return;
  }
  struct stat lp_st;
  if (::fstat(lp_fd.get(), &lp_st) != 0) {
    error("cannot stat", lp, errno);
    return;
  }
  if (!S_ISREG(lp_st.st_mode)) return;
  const uint64_t lp_size = uint64_t(lp_st.st_size);

  Fd gz_fd(::openat(dfd_.get(), gz.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat gz_st;
  if (!gz_fd.ok() || ::fstat(gz_fd.get(), &gz_st) != 0 || !S_ISREG(gz_st.st_mode)) {
    if (!gz_fd.ok() && errno != ENOENT) {
      error("cannot open", gz, errno);
      return;
    }
    // No .gz yet (the usual case; a non-regular file in the way makes the rename fail).
    write_gz(date, Build::fresh, lp_fd.get(), -1, lp_st);
    return;
  }

  // Both exist. Pass 1: is the .gz's content (or its readable part) a prefix of the .lp?
  std::string err;
  bool prefix = true, valid = false;
  uint64_t total = 0;
  const int lpfd = lp_fd.get();
  // p[0, n) equals the .lp's bytes at lp_off?
  auto same = [&](const unsigned char* p, size_t n, uint64_t lp_off) {
    return pread_full(lpfd, cmp_.data(), n, lp_off) && std::memcmp(p, cmp_.data(), n) == 0;
  };
  Outcome o = inflate_all(
      gz_fd.get(),
      [&](const unsigned char* p, size_t n, uint64_t off) {
        if (!prefix || off >= lp_size) return;
        const size_t m = size_t(std::min<uint64_t>(n, lp_size - off));
        if (!same(p, m, off)) prefix = false;
      },
      total, valid, err);
  if (o == Outcome::aborted) return;
  if (o == Outcome::error) {
    error_text("cannot read " + dir_ + "/" + gz + ": " + err);
    return;
  }
  if (valid && prefix && total == lp_size) {
    // A crash after the rename: the .gz is complete.
    if (remove_lp(date, lp_st, lp_size)) ++st_.recovered;
    return;
  }
  if (prefix && total <= lp_size) {
    // A partial or damaged compression of this .lp: write it again from the .lp.
    write_gz(date, Build::fresh, lp_fd.get(), -1, lp_st);
    return;
  }
  if (!valid) {
    error_text(dir_ + "/" + gz + " is damaged and holds data that is not in " + lp + ": both kept");
    return;
  }
  // Pass 2 (a complete .gz longer than the .lp): does it end with the .lp's bytes (a crash
  // after appending late points to it)?
  bool suffix = true;
  const uint64_t start = total - lp_size;
  uint64_t total2 = 0;
  o = inflate_all(
      gz_fd.get(),
      [&](const unsigned char* p, size_t n, uint64_t off) {
        if (!suffix || off + n <= start) return;
        const size_t skip = off < start ? size_t(start - off) : 0;
        if (!same(p + skip, n - skip, off + skip - start)) suffix = false;
      },
      total2, valid, err);
  if (o == Outcome::aborted) return;
  if (o == Outcome::error || !valid || total2 != total) {
    error_text("cannot read " + dir_ + "/" + gz + ": " + (err.empty() ? "changed" : err));
    return;
  }
  if (suffix) {
    if (remove_lp(date, lp_st, lp_size)) ++st_.recovered;
    return;
  }
  // Late points written after the day was compressed: add them as a further member.
  write_gz(date, Build::append, lp_fd.get(), gz_fd.get(), lp_st);
}

}  // namespace

int64_t utc_day(int64_t time_ns) {
  int64_t d = time_ns / kDayNs;
  if (time_ns % kDayNs < 0) --d;
  return d;
}

DayFileKind parse_day_file(std::string_view name, int64_t* day) {
  DayFileKind kind = DayFileKind::none;
  std::string_view date;
  if (name.size() == 13 && name.substr(10) == ".lp") {
    kind = DayFileKind::lp;
    date = name.substr(0, 10);
  } else if (name.size() == 16 && name.substr(10) == ".lp.gz") {
    kind = DayFileKind::lp_gz;
    date = name.substr(0, 10);
  } else if (name.size() == 21 && name[0] == '.' && name.substr(11) == ".lp.gz.tmp") {
    kind = DayFileKind::temp;
    date = name.substr(1, 10);
  } else {
    return DayFileKind::none;
  }
  int64_t d = 0;
  if (!parse_date(date, d)) return DayFileKind::none;
  if (day) *day = d;
  return kind;
}

RetentionStats retention_pass(const std::string& dir, int64_t now_ns, const RetentionOptions& opt) {
  RetentionStats st;
  {
    Pass p(dir, opt, st);
    p.run(utc_day(now_ns));
  }
  st.dir_bytes = dir_bytes(dir);
  return st;
}

uint64_t dir_bytes(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return 0;
  DIR* d = ::fdopendir(dfd);
  if (!d) {
    ::close(dfd);
    return 0;
  }
  uint64_t sum = 0;
  while (dirent* e = ::readdir(d)) {
    struct stat st;
    if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
      sum += uint64_t(st.st_size);
  }
  ::closedir(d);
  return sum;
}

std::string describe(const RetentionStats& st, int64_t keep_days) {
  std::string s;
  auto part = [&](const std::string& p) {
    if (!s.empty()) s += ", ";
    s += p;
  };
  if (st.compressed)
    part("compressed " + std::to_string(st.compressed) + " day file" +
         (st.compressed == 1 ? "" : "s") + " (" + mb(st.plain_bytes) + " -> " + mb(st.gz_bytes) +
         ")");
  if (st.recovered)
    part("finished " + std::to_string(st.recovered) + " interrupted compression" +
         (st.recovered == 1 ? "" : "s"));
  if (st.deleted)
    part("deleted " + std::to_string(st.deleted) + " older than " + std::to_string(keep_days) +
         " day" + (keep_days == 1 ? "" : "s") + " (" + mb(st.deleted_bytes) + ")");
  if (st.temp_removed)
    part("removed " + std::to_string(st.temp_removed) + " temp file" +
         (st.temp_removed == 1 ? "" : "s") + " of an interrupted pass");
  return s;
}

}  // namespace mp::upload
