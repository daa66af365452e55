#include "journal/journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/clock.h"
#include "common/log.h"

namespace mp::journal {
namespace {

constexpr char kMagic[kSegmentHeader] = {'M', 'P', 'J', 'R', 'N', 'L', '0', '1'};
constexpr char kMagicCompressed[kSegmentHeader] = {'M', 'P', 'J', 'R', 'N', 'L', '0', '2'};

void put_u32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint32_t crc_of(std::string_view s) {
  uLong c = crc32(0L, Z_NULL, 0);
  return static_cast<uint32_t>(
      crc32(c, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

// [u32 original length][raw deflate of `in` with `dict` as preset dictionary]
bool deflate_with(std::string_view in, const std::string& dict, std::string& out) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  if (!dict.empty())
    deflateSetDictionary(&zs, reinterpret_cast<const Bytef*>(dict.data()), uInt(dict.size()));
  const uLong bound = deflateBound(&zs, uLong(in.size()));
  out.assign(4 + bound, '\0');
  put_u32(out.data(), uint32_t(in.size()));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = uInt(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data() + 4);
  zs.avail_out = uInt(bound);
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(4 + zs.total_out);
  deflateEnd(&zs);
  return rc == Z_STREAM_END;
}

bool inflate_with(std::string_view in, const std::string& dict, std::string& out) {
  if (in.size() < 4) return false;
  const uint32_t n = get_u32(in.data());
  if (n > kMaxPayload) return false;
  out.assign(n, '\0');
  if (n == 0) return true;
  z_stream zs{};
  if (inflateInit2(&zs, -15) != Z_OK) return false;
  bool ok = dict.empty() || inflateSetDictionary(&zs, reinterpret_cast<const Bytef*>(dict.data()),
                                                 uInt(dict.size())) == Z_OK;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + 4));
  zs.avail_in = uInt(in.size() - 4);
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = n;
  ok = ok && inflate(&zs, Z_FINISH) == Z_STREAM_END && zs.total_out == n;
  inflateEnd(&zs);
  return ok;
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

bool write_full(int fd, const char* buf, size_t n) {
  while (n > 0) {
    ssize_t r = ::write(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

uint64_t file_size(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// A finished segment is "sealed": it has no write permission. The writer seals a segment
// when it moves on to the next one and when it closes, and at open every segment an earlier
// writer left unsealed (a crash, an older version). A reader at the end of an unsealed
// segment knows the writer is still in it, so it need not list the directory for a later
// one (the listing was most of a consumer's system calls per record).
constexpr mode_t kWriteBits = S_IWUSR | S_IWGRP | S_IWOTH;
bool sealed(const struct stat& st) { return (st.st_mode & kWriteBits) == 0; }
// False when the file stays writable (a file system without permissions, such as vfat:
// readers then find the next segment by their 10 s listing only).
bool seal(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || sealed(st)) return true;
  return ::chmod(path.c_str(), st.st_mode & 07777 & ~kWriteBits) == 0 &&
         ::stat(path.c_str(), &st) == 0 && sealed(st);
}

// Length of the valid records of a segment (from the header on); `size` is the file size.
uint64_t valid_length(int fd, uint64_t size) {
  char magic[kSegmentHeader];
  if (size < kSegmentHeader || !pread_full(fd, magic, kSegmentHeader, 0) ||
      (std::memcmp(magic, kMagic, kSegmentHeader) != 0 &&
       std::memcmp(magic, kMagicCompressed, kSegmentHeader) != 0))
    return 0;
  uint64_t off = kSegmentHeader;
  std::string payload;
  while (off + kRecordHeader <= size) {
    char h[kRecordHeader];
    if (!pread_full(fd, h, kRecordHeader, off)) break;
    const uint32_t len = get_u32(h);
    if (len > kMaxPayload || off + kRecordHeader + len > size) break;
    payload.resize(len);
    if (!pread_full(fd, payload.data(), len, off + kRecordHeader)) break;
    if (crc_of(payload) != get_u32(h + 4)) break;
    off += kRecordHeader + len;
  }
  return off;
}

// The smallest segment any consumer still needs (UINT64_MAX when there is no cursor).
uint64_t oldest_needed(const std::string& dir) {
  uint64_t need = UINT64_MAX;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return need;
  while (dirent* e = ::readdir(d)) {
    if (std::strncmp(e->d_name, "cursor.", 7) != 0 || std::strstr(e->d_name, ".tmp")) continue;
    Position p;
    if (load_cursor(dir, e->d_name + 7, p)) need = std::min(need, p.segment);
  }
  ::closedir(d);
  return need;
}

uint64_t newest_cursor(const std::string& dir) {
  uint64_t newest = 0;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return newest;
  while (dirent* e = ::readdir(d)) {
    if (std::strncmp(e->d_name, "cursor.", 7) != 0 || std::strstr(e->d_name, ".tmp")) continue;
    Position p;
    if (load_cursor(dir, e->d_name + 7, p)) newest = std::max(newest, p.segment);
  }
  ::closedir(d);
  return newest;
}

}  // namespace

std::string frame_record(std::string_view payload) {
  std::string rec(kRecordHeader, '\0');
  put_u32(rec.data(), static_cast<uint32_t>(payload.size()));
  put_u32(rec.data() + 4, crc_of(payload));
  rec.append(payload);
  return rec;
}

std::string segment_name(uint64_t seq) {
  char name[32];
  std::snprintf(name, sizeof name, "%020" PRIu64 ".jnl", seq);
  return name;
}

std::vector<uint64_t> list_segments(const std::string& dir) {
  std::vector<uint64_t> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    const char* n = e->d_name;
    if (std::strlen(n) != 24 || std::strcmp(n + 20, ".jnl") != 0) continue;
    uint64_t v = 0;
    bool ok = true;
    for (int i = 0; i < 20 && ok; ++i) {
      ok = n[i] >= '0' && n[i] <= '9';
      v = v * 10 + static_cast<uint64_t>(n[i] - '0');
    }
    if (ok && v > 0) out.push_back(v);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool save_cursor(const std::string& dir, const std::string& consumer, Position p) {
  const std::string path = dir + "/cursor." + consumer;
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return false;
  char text[64];
  const int n = std::snprintf(text, sizeof text, "%" PRIu64 " %" PRIu64 "\n", p.segment, p.offset);
  bool ok = write_full(fd, text, static_cast<size_t>(n)) && ::fdatasync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return false;
  fsync_dir(dir);
  return true;
}

bool load_cursor(const std::string& dir, const std::string& consumer, Position& p) {
  FILE* f = std::fopen((dir + "/cursor." + consumer).c_str(), "re");
  if (!f) return false;
  unsigned long long seg = 0, off = 0;
  char extra = 0;
  const int n = std::fscanf(f, "%llu %llu%c", &seg, &off, &extra);
  std::fclose(f);
  if (n != 3 || extra != '\n') return false;
  p = {seg, off};
  return true;
}

// ---------------------------------------------------------------------------------------
// Writer

Writer::~Writer() { close(); }

std::string Writer::path_of(uint64_t seq) const { return opt_.dir + "/" + segment_name(seq); }

bool Writer::open(const WriterOptions& opt, std::string& error) {
  close();
  opt_ = opt;
  std::error_code ec;
  std::filesystem::create_directories(opt_.dir, ec);
  if (!std::filesystem::is_directory(opt_.dir, ec)) {
    error = "cannot create journal directory " + opt_.dir;
    return false;
  }
  st_ = WriterStats{};
  segs_.clear();
  for (uint64_t seq : list_segments(opt_.dir)) {
    struct stat st;
    if (::stat(path_of(seq).c_str(), &st) == 0) segs_.push_back({seq, uint64_t(st.st_size)});
  }
  if (!segs_.empty()) {  // a crash may have left a torn record at the end of the newest
    auto& [seq, size] = segs_.back();
    const std::string path = path_of(seq);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      const uint64_t valid = valid_length(fd, size);
      ::close(fd);
      struct stat st;
      if (valid < size && ::stat(path.c_str(), &st) == 0) {
        // (sealed, and a power cut took its tail: writable again for the cut)
        if (sealed(st)) (void)::chmod(path.c_str(), (st.st_mode & 07777) | S_IWUSR);
        fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd >= 0 && ::ftruncate(fd, static_cast<off_t>(valid)) == 0) {
          log::warn("journal %s: torn or corrupt tail of %s: %llu bytes cut off", opt_.dir.c_str(),
                    segment_name(seq).c_str(), static_cast<unsigned long long>(size - valid));
          st_.truncated_bytes += size - valid;
          size = valid;
          (void)::fdatasync(fd);
        } else {
          log::error("journal %s: cannot cut the torn tail off %s: %s", opt_.dir.c_str(),
                     segment_name(seq).c_str(), std::strerror(errno));
        }
        if (fd >= 0) ::close(fd);
      }
    }
  }
  for (const auto& [seq, size] : segs_) seal_logged(path_of(seq));
  if (!new_segment()) {
    error = "cannot create a segment in " + opt_.dir + ": " + std::strerror(errno);
    return false;
  }
  enforce_bounds();
  {
    std::lock_guard lk(mu_);
    stop_ = false;
    open_ = true;
  }
  last_sync_ns_ = clock::mono_ns();
  thread_ = std::thread([this] { run(); });
  return true;
}

void Writer::seal_logged(const std::string& path) {
  if (seal(path) || seal_failed_logged_) return;
  seal_failed_logged_ = true;
  log::warn(
      "journal %s: cannot take the write permission off a finished segment (%s): "
      "readers find the next segment within 10 s instead of at once",
      opt_.dir.c_str(), std::strerror(errno));
}

bool Writer::new_segment() {
  uint64_t seq = segs_.empty() ? 1 : segs_.back().first + 1;
  // After a lost directory the consumers' cursors may be ahead: never reuse their numbers.
  seq = std::max(seq, newest_cursor(opt_.dir) + 1);
  const std::string path = path_of(seq);
  // The segment left is sealed before the next exists (after its last write and sync), so a
  // reader never sees a later segment while this one looks unfinished, not even after a
  // kill between the two; a failed create below leaves it sealed but still written to,
  // which only costs readers a listing per look.
  if (!segs_.empty()) seal_logged(path_of(segs_.back().first));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return false;
  if (!write_full(fd, opt_.compress ? kMagicCompressed : kMagic, kSegmentHeader) ||
      ::fdatasync(fd) != 0) {
    ::close(fd);
    ::unlink(path.c_str());
    return false;
  }
  fsync_dir(opt_.dir);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  prev_.clear();  // a compression chain never crosses segments
  segs_.push_back({seq, kSegmentHeader});
  std::lock_guard lk(mu_);
  st_.fsyncs += 2;
  return true;
}

void Writer::sync_active() {
  if (fd_ >= 0 && unsynced_) {
    (void)::fdatasync(fd_);
    unsynced_ = false;
    std::lock_guard lk(mu_);
    ++st_.fsyncs;
  }
  last_sync_ns_ = clock::mono_ns();
}

void Writer::enforce_bounds() {
  const uint64_t needed = oldest_needed(opt_.dir);
  uint64_t total = 0;
  for (const auto& s : segs_) total += s.second;
  uint64_t deleted = 0, dropped = 0, dropped_bytes = 0;
  while (segs_.size() > 1) {
    const auto [seq, size] = segs_.front();
    const bool consumed = needed != UINT64_MAX && seq < needed;
    const bool over = total > opt_.max_bytes;
    if (!consumed && !over) break;
    ::unlink(path_of(seq).c_str());
    segs_.erase(segs_.begin());
    total -= size;
    if (consumed) {
      ++deleted;
    } else {
      ++dropped;
      dropped_bytes += size;
      log::warn(
          "journal %s over %llu bytes: deleted %s (%llu bytes) before every consumer had "
          "read it",
          opt_.dir.c_str(), static_cast<unsigned long long>(opt_.max_bytes),
          segment_name(seq).c_str(), static_cast<unsigned long long>(size));
    }
  }
  std::lock_guard lk(mu_);
  st_.segments_deleted += deleted;
  st_.segments_dropped += dropped;
  st_.dropped_bytes += dropped_bytes;
  st_.bytes = total;
  st_.segments = segs_.size();
}

bool Writer::append(std::string payload) {
  if (payload.size() > kMaxPayload) return false;
  bool first = false;
  {
    std::lock_guard lk(mu_);
    if (!open_ || stop_) return false;
    if (queue_.size() >= opt_.queue_max) {
      ++st_.dropped_queue_full;
      return false;
    }
    first = queue_.empty();
    if (first) oldest_queued_ns_ = clock::mono_ns();
    queue_.push_back(std::move(payload));
    ++st_.appended;
  }
  // Only a first record wakes the writer: the ones after it wait for the group commit the
  // writer already sleeps towards (one wake-up per commit, not per record).
  if (first) cv_.notify_one();
  return true;
}

void Writer::run() {
  std::unique_lock lk(mu_);
  while (true) {
    // 1. Wait for a first record (or the periodic sync when something is unsynced).
    const auto sync_due = std::chrono::milliseconds(opt_.sync_ms);
    cv_.wait_for(lk, sync_due, [this] { return stop_ || !queue_.empty(); });
    // 2. Group commit: let more records come until the oldest has waited commit_ms.
    if (!stop_ && !queue_.empty()) {
      const int64_t due = oldest_queued_ns_ + opt_.commit_ms * 1000000;
      const int64_t left = due - clock::mono_ns();
      if (left > 0) cv_.wait_for(lk, std::chrono::nanoseconds(left), [this] { return stop_; });
    }
    std::vector<std::string> batch(std::make_move_iterator(queue_.begin()),
                                   std::make_move_iterator(queue_.end()));
    queue_.clear();
    const bool stopping = stop_;
    lk.unlock();
    // 3. One write() per segment touched; fdatasync when the period is over.
    if (!batch.empty()) write_batch(batch);
    if (unsynced_ && clock::mono_ns() - last_sync_ns_ >= opt_.sync_ms * 1000000) sync_active();
    lk.lock();
    if (stopping && queue_.empty()) break;
  }
  lk.unlock();
  sync_active();
}

void Writer::write_batch(std::vector<std::string>& batch) {
  std::string buf, stored;
  uint64_t in_buf = 0, written = 0, errors = 0, writes = 0;
  bool chain_broken = false;
  auto flush = [&] {
    if (buf.empty()) return;
    ++writes;
    const uint64_t before = segs_.back().second;
    if (fd_ >= 0 && write_full(fd_, buf.data(), buf.size())) {
      segs_.back().second += buf.size();
      written += in_buf;
      unsynced_ = true;
    } else {
      errors += in_buf;
      log::error("journal %s: write failed: %s (%llu records lost)", opt_.dir.c_str(),
                 std::strerror(errno), static_cast<unsigned long long>(in_buf));
      if (fd_ >= 0) (void)!::ftruncate(fd_, static_cast<off_t>(before));
      chain_broken = opt_.compress;  // later records would refer to lost ones
    }
    buf.clear();
    in_buf = 0;
  };
  auto encode = [&](const std::string& p) {
    if (opt_.compress && !deflate_with(p, prev_, stored)) stored.clear();
    return kRecordHeader + (opt_.compress ? stored.size() : p.size());
  };
  for (auto& p : batch) {
    uint64_t rec = encode(p);
    const uint64_t size = segs_.back().second + buf.size();
    if (size > kSegmentHeader && size + rec > opt_.segment_bytes) {
      flush();
      sync_active();
      if (!new_segment()) {
        log::error("journal %s: cannot start a segment: %s", opt_.dir.c_str(),
                   std::strerror(errno));
      }
      enforce_bounds();
      rec = encode(p);  // the new segment's chain starts here
    }
    buf += frame_record(opt_.compress ? stored : p);
    if (opt_.compress) prev_ = p;
    ++in_buf;
  }
  flush();
  if (chain_broken) {
    sync_active();
    new_segment();
  }
  uint64_t total = 0;
  for (const auto& s : segs_) total += s.second;
  std::lock_guard lk(mu_);
  st_.written += written;
  st_.write_errors += errors;
  st_.writes += writes;
  st_.bytes = total;
  st_.segments = segs_.size();
}

void Writer::close() {
  {
    std::lock_guard lk(mu_);
    if (!open_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!segs_.empty()) seal_logged(path_of(segs_.back().first));
  std::lock_guard lk(mu_);
  open_ = false;
}

WriterStats Writer::stats() const {
  std::lock_guard lk(mu_);
  return st_;
}

// ---------------------------------------------------------------------------------------
// Reader

Reader::~Reader() {
  if (fd_ >= 0) ::close(fd_);
}

bool Reader::open_segment(uint64_t seq) {
  if (fd_ >= 0 && fd_seq_ == seq) return true;
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open((dir_ + "/" + segment_name(seq)).c_str(), O_RDONLY | O_CLOEXEC);
  fd_seq_ = seq;
  header_ok_ = false;
  prev_.clear();
  prev_end_ = 0;
  return fd_ >= 0;
}

bool Reader::expand(uint64_t offset, const std::string& stored, std::string& payload) {
  if (prev_end_ != offset) {  // rebuild the chain from the segment's first record
    prev_.clear();
    prev_end_ = kSegmentHeader;
    std::string rec, orig;
    while (prev_end_ < offset) {
      char h[kRecordHeader];
      if (!pread_full(fd_, h, kRecordHeader, prev_end_)) return false;
      const uint32_t len = get_u32(h);
      if (len > kMaxPayload) return false;
      rec.resize(len);
      if (!pread_full(fd_, rec.data(), len, prev_end_ + kRecordHeader) ||
          crc_of(rec) != get_u32(h + 4) || !inflate_with(rec, prev_, orig))
        return false;
      prev_.swap(orig);
      prev_end_ += kRecordHeader + len;
    }
    if (prev_end_ != offset) return false;
  }
  if (!inflate_with(stored, prev_, payload)) return false;
  prev_ = payload;
  prev_end_ = offset + kRecordHeader + stored.size();
  return true;
}

bool Reader::advance(Position& pos, const std::vector<uint64_t>& segs) {
  auto it = std::upper_bound(segs.begin(), segs.end(), pos.segment);
  if (it == segs.end()) return false;
  pos = {*it, kSegmentHeader};
  return true;
}

Reader::Result Reader::next(Position& pos, std::string& payload) {
  for (int guard = 0; guard < 100000; ++guard) {
    if (pos.segment == 0 || !open_segment(pos.segment)) {
      // Not started yet, or the segment is gone: the oldest one after it.
      const auto segs = list_segments(dir_);
      if (segs.empty()) return Result::none;
      if (pos.segment != 0 && segs.front() > pos.segment) {
        ++st_.lost_segments;
        log::warn("journal %s: segment %s was deleted before it was read (journal full?)",
                  dir_.c_str(), segment_name(pos.segment).c_str());
      }
      Position from = pos;
      if (!advance(from, segs)) return Result::none;
      pos = from;
      continue;
    }
    if (pos.offset < kSegmentHeader) pos.offset = kSegmentHeader;
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return Result::none;  // (tried again at the next look)
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    bool corrupt = false;
    if (!header_ok_ && size >= kSegmentHeader) {
      char magic[kSegmentHeader];
      header_ok_ = pread_full(fd_, magic, kSegmentHeader, 0);
      compressed_ = header_ok_ && std::memcmp(magic, kMagicCompressed, kSegmentHeader) == 0;
      corrupt = !header_ok_ || (!compressed_ && std::memcmp(magic, kMagic, kSegmentHeader) != 0);
    }
    if (header_ok_ && !corrupt && pos.offset + kRecordHeader <= size) {
      char h[kRecordHeader];
      if (pread_full(fd_, h, kRecordHeader, pos.offset)) {
        const uint32_t len = get_u32(h);
        if (len > kMaxPayload) {
          corrupt = true;
        } else if (pos.offset + kRecordHeader + len <= size) {
          payload.resize(len);
          if (pread_full(fd_, payload.data(), len, pos.offset + kRecordHeader) &&
              crc_of(payload) == get_u32(h + 4) &&
              (!compressed_ || expand(pos.offset, std::string(payload), payload))) {
            pos.offset += kRecordHeader + len;
            ++st_.records;
            return Result::record;
          }
          corrupt = true;
        }
      }
    }
    // The end of what is there (or a bad record): a later segment means this one is done.
    // At the end of a segment the writer is still in (unsealed), there is none: no listing,
    // but for one every 10 s (a segment an older version left unsealed, its writer gone).
    const int64_t now = clock::mono_ns();
    if (!corrupt && !sealed(st) && listed_ns_ != 0 && now - listed_ns_ < unsealed_list_ns_)
      return Result::none;
    listed_ns_ = now;
    ++st_.listings;
    const auto segs = list_segments(dir_);
    Position later = pos;
    if (!advance(later, segs)) return Result::none;  // still being written
    if (file_size(fd_) != size) continue;            // it grew meanwhile: read on first
    if (corrupt || pos.offset < size) {
      ++st_.corrupt;
      log::warn("journal %s: corrupt or torn record in %s at offset %llu; %llu bytes skipped",
                dir_.c_str(), segment_name(pos.segment).c_str(),
                static_cast<unsigned long long>(pos.offset),
                static_cast<unsigned long long>(size > pos.offset ? size - pos.offset : 0));
    }
    pos = later;
  }
  return Result::none;
}

}  // namespace mp::journal
