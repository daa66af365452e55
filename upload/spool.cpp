#include "upload/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/log.h"

namespace mp::upload {
namespace {

constexpr char kMagic[8] = {'M', 'P', 'S', 'P', 'O', 'O', 'L', '1'};
constexpr uint64_t kHeader = sizeof kMagic;
constexpr uint64_t kRecHeader = 8;  // length + crc
constexpr uint64_t kTimeBytes = 8;  // payload prefix
constexpr uint64_t kMaxPayload = Spool::kMaxLineBytes + kTimeBytes;

void put_u32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_i64(char* p, int64_t s) {
  uint64_t v = static_cast<uint64_t>(s);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
int64_t get_i64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return static_cast<int64_t>(v);
}
uint32_t crc_of(const char* p, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = crc32(c, reinterpret_cast<const Bytef*>(p), chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

bool pread_full(int fd, char* buf, size_t n, uint64_t off) {
  while (n > 0) {
    ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return true;
}

bool pwrite_full(int fd, const char* buf, size_t n, uint64_t off) {
  while (n > 0) {
    ssize_t r = ::pwrite(fd, buf, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return true;
}

bool fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool mkdir_p(const std::string& dir) {
  std::string cur;
  size_t i = 0;
  while (i <= dir.size()) {
    size_t j = dir.find('/', i);
    if (j == std::string::npos) j = dir.size();
    cur = dir.substr(0, j);
    if (!cur.empty() && ::mkdir(cur.c_str(), 0750) != 0 && errno != EEXIST) return false;
    i = j + 1;
  }
  struct stat st;
  return ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Parses "<20 digits>.seg".
bool parse_seg_name(const char* name, uint64_t& seq) {
  size_t n = std::strlen(name);
  if (n != 24 || std::strcmp(name + 20, ".seg") != 0) return false;
  uint64_t v = 0;
  for (int i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  seq = v;
  return true;
}

// Reads records of one segment sequentially through a buffer.
class Reader {
 public:
  Reader(int fd, uint64_t size) : fd_(fd), size_(size) {}
  // Result of next(): 1 = record, 0 = clean end, -1 = torn/corrupt at `offset`.
  int next(uint64_t offset, int64_t& time, std::string_view& line, uint64_t& rec_size) {
    if (offset == size_) return 0;
    if (size_ - offset < kRecHeader) return -1;
    if (!ensure(offset, kRecHeader)) return -1;
    const char* h = buf_.data() + (offset - buf_off_);
    uint32_t len = get_u32(h);
    uint32_t crc = get_u32(h + 4);
    if (len < kTimeBytes || len > kMaxPayload || size_ - offset - kRecHeader < len) return -1;
    if (!ensure(offset, kRecHeader + len)) return -1;
    const char* p = buf_.data() + (offset - buf_off_) + kRecHeader;
    if (crc_of(p, len) != crc) return -1;
    time = get_i64(p);
    line = std::string_view(p + kTimeBytes, len - kTimeBytes);
    rec_size = kRecHeader + len;
    return 1;
  }

 private:
  bool ensure(uint64_t off, uint64_t n) {
    if (off >= buf_off_ && off + n <= buf_off_ + buf_.size()) return true;
    uint64_t want = std::max<uint64_t>(n, kChunk);
    want = std::min<uint64_t>(want, size_ - off);
    if (want < n) return false;
    buf_.resize(want);
    buf_off_ = off;
    if (!pread_full(fd_, buf_.data(), want, off)) {
      buf_.clear();
      return false;
    }
    return true;
  }
  static constexpr uint64_t kChunk = 1 << 20;
  int fd_;
  uint64_t size_;
  std::vector<char> buf_;
  uint64_t buf_off_ = 0;
};

}  // namespace

Spool::~Spool() { close(); }

std::string Spool::seg_path(uint64_t seq) const {
  char name[32];
  std::snprintf(name, sizeof name, "%020" PRIu64 ".seg", seq);
  return dir_ + "/" + name;
}

bool Spool::is_open() const {
  std::lock_guard lk(mu_);
  return open_;
}

bool Spool::open(const std::string& dir, uint64_t max_bytes, uint64_t segment_bytes,
                 std::string* error) {
  close();
  std::lock_guard lk(mu_);
  auto fail = [&](const std::string& why) {
    if (error) *error = why;
    segs_.clear();
    if (wfd_ >= 0) ::close(wfd_);
    wfd_ = -1;
    return false;
  };
  dir_ = dir;
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  max_bytes_ = std::max<uint64_t>(max_bytes, 4096);
  segment_bytes_ =
      segment_bytes ? segment_bytes : std::clamp<uint64_t>(max_bytes_ / 8, 64 << 10, 4 << 20);
  segment_bytes_ = std::max<uint64_t>(segment_bytes_, kHeader + kRecHeader + 64);
  st_ = SpoolStats{};
  segs_.clear();
  dirty_ = false;
  last_sync_ns_ = 0;
  oldest_known_ = false;
  if (!mkdir_p(dir_)) return fail("cannot create spool directory " + dir_ + ": " + strerror(errno));

  std::vector<uint64_t> seqs;
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return fail("cannot read spool directory " + dir_ + ": " + strerror(errno));
  while (dirent* e = ::readdir(d)) {
    uint64_t seq;
    if (parse_seg_name(e->d_name, seq)) seqs.push_back(seq);
  }
  ::closedir(d);
  std::sort(seqs.begin(), seqs.end());

  // Checkpoint.
  uint64_t ck_seq = 0, ck_off = 0;
  if (FILE* f = std::fopen((dir_ + "/checkpoint").c_str(), "re")) {
    unsigned long long a = 0, b = 0;
    if (std::fscanf(f, "%llu %llu", &a, &b) == 2) {
      ck_seq = a;
      ck_off = b;
    } else {
      log::warn("spool: unreadable checkpoint in %s, resending from the oldest segment",
                dir_.c_str());
    }
    std::fclose(f);
  }

  uint64_t max_seq = ck_seq;
  for (uint64_t seq : seqs) {
    max_seq = std::max(max_seq, seq);
    if (seq < ck_seq) {  // sent before; its deletion did not happen
      ::unlink(seg_path(seq).c_str());
      continue;
    }
    Segment s;
    s.seq = seq;
    uint64_t idx = UINT64_MAX;
    if (!scan_segment(s, seq == ck_seq ? ck_off : 0, &idx))
      return fail("cannot read spool segment " + seg_path(seq) + ": " + strerror(errno));
    if (seq == ck_seq) {
      if (ck_off >= s.size) {
        ckpt_ = {seq, s.size, s.records};  // everything in it was sent
      } else if (idx != UINT64_MAX) {
        ckpt_ = {seq, ck_off, idx};
      } else {
        log::warn("spool: checkpoint offset %llu is not a record boundary of %s; resending it",
                  static_cast<unsigned long long>(ck_off), seg_path(seq).c_str());
        ckpt_ = {seq, kHeader, 0};
      }
    }
    segs_.push_back(s);
  }
  if (segs_.empty()) {
    if (!new_segment_locked(max_seq + 1))
      return fail("cannot create spool segment in " + dir_ + ": " + strerror(errno));
    ckpt_ = {segs_.front().seq, kHeader, 0};
  } else if (segs_.front().seq != ck_seq) {
    ckpt_ = {segs_.front().seq, kHeader, 0};
  }
  wfd_ = ::open(seg_path(segs_.back().seq).c_str(), O_WRONLY | O_CLOEXEC);
  if (wfd_ < 0)
    return fail("cannot open spool segment for writing: " + std::string(strerror(errno)));

  total_bytes_ = 0;
  pending_ = 0;
  for (const auto& s : segs_) {
    total_bytes_ += s.size;
    if (s.seq == ckpt_.segment)
      pending_ += s.records - ckpt_.index;
    else if (s.seq > ckpt_.segment)
      pending_ += s.records;
  }
  normalize_locked(ckpt_);
  open_ = true;
  if (pending_ > 0)
    log::info("spool: %llu unsent points in %zu segments (%llu bytes) in %s",
              static_cast<unsigned long long>(pending_), segs_.size(),
              static_cast<unsigned long long>(total_bytes_), dir_.c_str());
  return true;
}

bool Spool::scan_segment(Segment& seg, uint64_t ckpt_offset, uint64_t* ckpt_index) {
  std::string path = seg_path(seg.seq);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return false;
  }
  uint64_t file_size = static_cast<uint64_t>(st.st_size);
  char magic[kHeader];
  if (file_size < kHeader || !pread_full(fd, magic, kHeader, 0) ||
      std::memcmp(magic, kMagic, kHeader) != 0) {
    // A segment torn while it was being created, or not ours: start it afresh.
    log::warn("spool: %s has no valid header; %llu bytes discarded", path.c_str(),
              static_cast<unsigned long long>(file_size));
    st_.truncated_bytes += file_size;
    bool ok = ::ftruncate(fd, 0) == 0 && pwrite_full(fd, kMagic, kHeader, 0) && ::fsync(fd) == 0;
    ::close(fd);
    seg.size = kHeader;
    seg.records = 0;
    return ok;
  }
  Reader rd(fd, file_size);
  uint64_t off = kHeader, n = 0;
  int64_t t;
  std::string_view line;
  uint64_t rs;
  for (;;) {
    if (off == ckpt_offset) *ckpt_index = n;
    int r = rd.next(off, t, line, rs);
    if (r != 1) break;
    off += rs;
    ++n;
  }
  if (off < file_size) {
    log::warn("spool: %s: torn or corrupt record at offset %llu; %llu bytes cut off", path.c_str(),
              static_cast<unsigned long long>(off),
              static_cast<unsigned long long>(file_size - off));
    st_.truncated_bytes += file_size - off;
    if (::ftruncate(fd, static_cast<off_t>(off)) != 0 || ::fsync(fd) != 0) {
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  seg.size = off;
  seg.records = n;
  return true;
}

bool Spool::new_segment_locked(uint64_t seq) {
  std::string path = seg_path(seq);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return false;
  if (!pwrite_full(fd, kMagic, kHeader, 0) || ::fdatasync(fd) != 0) {
    ::close(fd);
    ::unlink(path.c_str());
    return false;
  }
  fsync_dir(dir_);
  st_.fsyncs += 2;
  if (wfd_ >= 0) ::close(wfd_);
  wfd_ = fd;
  segs_.push_back(Segment{seq, kHeader, 0});
  total_bytes_ += kHeader;
  return true;
}

bool Spool::roll_locked() {
  sync_locked();
  return new_segment_locked(segs_.back().seq + 1);
}

void Spool::drop_oldest_locked() {
  Segment s = segs_.front();
  uint64_t unsent = 0;
  if (s.seq == ckpt_.segment)
    unsent = s.records - ckpt_.index;
  else if (s.seq > ckpt_.segment)
    unsent = s.records;
  segs_.pop_front();
  ::unlink(seg_path(s.seq).c_str());
  total_bytes_ -= s.size;
  pending_ -= unsent;
  st_.dropped_points += unsent;
  if (ckpt_.segment <= s.seq) ckpt_ = {segs_.front().seq, kHeader, 0};
  oldest_known_ = false;
  log::warn("spool full (%llu bytes max): dropped %llu unsent points of the oldest segment",
            static_cast<unsigned long long>(max_bytes_), static_cast<unsigned long long>(unsent));
}

bool Spool::append(std::string_view line, int64_t point_time_ns) {
  if (line.empty() || line.size() > kMaxLineBytes ||
      line.find_first_of("\n\r") != std::string_view::npos)
    return false;
  std::lock_guard lk(mu_);
  if (!open_ || wfd_ < 0) return false;
  const uint64_t rec = kRecHeader + kTimeBytes + line.size();
  Segment* active = &segs_.back();
  if (active->records > 0 && active->size + rec > segment_bytes_) {
    if (!roll_locked()) {
      ++st_.write_errors;
      return false;
    }
    active = &segs_.back();
  }
  while (total_bytes_ + rec > max_bytes_ && segs_.size() > 1) drop_oldest_locked();
  active = &segs_.back();

  std::string buf(rec, '\0');
  put_u32(buf.data(), static_cast<uint32_t>(kTimeBytes + line.size()));
  put_i64(buf.data() + kRecHeader, point_time_ns);
  std::memcpy(buf.data() + kRecHeader + kTimeBytes, line.data(), line.size());
  put_u32(buf.data() + 4, crc_of(buf.data() + kRecHeader, kTimeBytes + line.size()));
  if (!pwrite_full(wfd_, buf.data(), buf.size(), active->size)) {
    ++st_.write_errors;
    // Leave no partial record behind; recovery would cut it anyway.
    if (::ftruncate(wfd_, static_cast<off_t>(active->size)) != 0) {
    }
    return false;
  }
  active->size += rec;
  active->records += 1;
  total_bytes_ += rec;
  if (pending_ == 0) {
    oldest_cache_ = point_time_ns;
    oldest_known_ = true;
  }
  pending_ += 1;
  st_.points_appended += 1;
  dirty_ = true;
  return true;
}

void Spool::sync_locked() {
  if (!dirty_ || wfd_ < 0) return;
  ::fdatasync(wfd_);
  ++st_.fsyncs;
  dirty_ = false;
}

bool Spool::maybe_sync(int64_t now_ns) {
  std::lock_guard lk(mu_);
  if (!dirty_ || wfd_ < 0) return false;
  if (last_sync_ns_ != 0 && now_ns - last_sync_ns_ < 1000000000) return false;
  sync_locked();
  last_sync_ns_ = now_ns;
  return true;
}

void Spool::sync() {
  std::lock_guard lk(mu_);
  sync_locked();
}

void Spool::close() {
  std::lock_guard lk(mu_);
  if (!open_) return;
  sync_locked();
  if (wfd_ >= 0) ::close(wfd_);
  wfd_ = -1;
  segs_.clear();
  open_ = false;
}

Spool::Segment* Spool::find_locked(uint64_t seq) {
  for (auto& s : segs_)
    if (s.seq == seq) return &s;
  return nullptr;
}

// A position at the end of a segment that is no longer the one being written moves to the
// start of the next segment.
void Spool::normalize_locked(SpoolPosition& p) {
  for (size_t i = 0; i + 1 < segs_.size(); ++i) {
    if (segs_[i].seq == p.segment && p.offset >= segs_[i].size) p = {segs_[i + 1].seq, kHeader, 0};
  }
}

SpoolBatch Spool::peek(size_t max_points, size_t max_bytes) {
  SpoolBatch b;
  std::lock_guard lk(mu_);
  if (!open_ || max_points == 0) return b;
  normalize_locked(ckpt_);
  SpoolPosition p = ckpt_;
  bool full = false;
  while (!full) {
    Segment* s = find_locked(p.segment);
    if (!s || p.offset >= s->size) break;  // the newest end
    int fd = ::open(seg_path(s->seq).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      log::error("spool: cannot open %s: %s", seg_path(s->seq).c_str(), strerror(errno));
      break;
    }
    Reader rd(fd, s->size);
    int64_t t;
    std::string_view line;
    uint64_t rs;
    int r = 0;
    while (!full) {
      r = rd.next(p.offset, t, line, rs);
      if (r != 1) break;
      if (b.count > 0 && b.body.size() + line.size() + 1 > max_bytes) {
        full = true;
        break;
      }
      b.body.append(line);
      b.body += '\n';
      if (b.count == 0 || t < b.oldest_time_ns) b.oldest_time_ns = t;
      ++b.count;
      p.offset += rs;
      p.index += 1;
      full = b.count >= max_points || b.body.size() >= max_bytes;
    }
    ::close(fd);
    if (r < 0) {
      // The file changed after it was checked at open (disk error). Lose the rest of this
      // segment rather than resend garbage forever; new points go to a fresh segment.
      uint64_t lost = s->records - p.index;
      log::error("spool: corrupt record in %s at offset %llu; %llu points lost",
                 seg_path(s->seq).c_str(), static_cast<unsigned long long>(p.offset),
                 static_cast<unsigned long long>(lost));
      if (s == &segs_.back() && !roll_locked()) break;
      s = find_locked(p.segment);
      st_.dropped_points += lost;
      pending_ -= std::min(pending_, lost);
      s->records = p.index;  // what the rest of the segment counts from now on
      s->size = p.offset;
      if (b.count == 0) ckpt_ = p;
    }
    normalize_locked(p);
  }
  b.end = p;
  return b;
}

bool Spool::write_checkpoint_locked() {
  std::string tmp = dir_ + "/checkpoint.tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return false;
  char text[64];
  int n = std::snprintf(text, sizeof text, "%llu %llu\n",
                        static_cast<unsigned long long>(ckpt_.segment),
                        static_cast<unsigned long long>(ckpt_.offset));
  bool ok = pwrite_full(fd, text, static_cast<size_t>(n), 0) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), (dir_ + "/checkpoint").c_str()) != 0) return false;
  fsync_dir(dir_);
  ++st_.checkpoint_writes;
  return true;
}

bool Spool::commit(const SpoolPosition& end_in) {
  std::lock_guard lk(mu_);
  if (!open_) return false;
  SpoolPosition end = end_in;
  normalize_locked(end);
  normalize_locked(ckpt_);
  if (end.segment < ckpt_.segment || (end.segment == ckpt_.segment && end.offset <= ckpt_.offset))
    return true;  // nothing new (or already dropped)
  Segment* es = find_locked(end.segment);
  if (!es || end.offset > es->size || end.index > es->records) return false;  // not ours

  uint64_t sent = 0;
  for (const auto& s : segs_) {
    if (s.seq < ckpt_.segment || s.seq > end.segment) continue;
    uint64_t from = s.seq == ckpt_.segment ? ckpt_.index : 0;
    uint64_t to = s.seq == end.segment ? end.index : s.records;
    sent += to - from;
  }
  ckpt_ = end;
  pending_ -= std::min(pending_, sent);
  st_.points_committed += sent;
  oldest_known_ = false;
  bool ok = write_checkpoint_locked();
  if (!ok) log::warn("spool: cannot write checkpoint in %s: %s", dir_.c_str(), strerror(errno));
  while (segs_.size() > 1 && segs_.front().seq < ckpt_.segment) {
    total_bytes_ -= segs_.front().size;
    ::unlink(seg_path(segs_.front().seq).c_str());
    segs_.pop_front();
  }
  return ok;
}

int64_t Spool::oldest_time_locked() {
  if (pending_ == 0) return 0;
  if (oldest_known_) return oldest_cache_;
  normalize_locked(ckpt_);
  Segment* s = find_locked(ckpt_.segment);
  if (!s || ckpt_.offset + kRecHeader + kTimeBytes > s->size) return 0;
  int fd = ::open(seg_path(s->seq).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[kRecHeader + kTimeBytes];
  int64_t t = 0;
  if (pread_full(fd, buf, sizeof buf, ckpt_.offset)) t = get_i64(buf + kRecHeader);
  ::close(fd);
  oldest_cache_ = t;
  oldest_known_ = true;
  return t;
}

SpoolStats Spool::stats() {
  std::lock_guard lk(mu_);
  SpoolStats s = st_;
  s.bytes = total_bytes_;
  s.segments = segs_.size();
  s.points_pending = pending_;
  s.oldest_pending_time_ns = oldest_time_locked();
  return s;
}

SpoolPosition Spool::checkpoint() {
  std::lock_guard lk(mu_);
  normalize_locked(ckpt_);
  return ckpt_;
}

}  // namespace mp::upload
