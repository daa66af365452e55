// Disk spool of line-protocol points waiting for the server.
//
// Every point is appended as soon as it comes off the bus and removed only after the server
// answered 2xx (commit). Layout of `dir`:
//   <20-digit sequence>.seg   append-only segment: 8-byte magic "MPSPOOL1", then records
//                             [u32 payload length][u32 CRC-32 of payload][payload], little
//                             endian; payload = [i64 point time ns][line bytes, no newline]
//   checkpoint                "<segment seq> <byte offset>\n" of the first unsent record;
//                             replaced by write-temp, fsync, rename, fsync(dir)
// A segment is rolled when the next record would take it past `segment_bytes` (default
// max_bytes/8 clamped to 64 KiB..4 MiB). Segments wholly before the checkpoint are deleted.
//
// Bounded: when an append would take the spool past `max_bytes`, the oldest segment is deleted
// and its unsent points are counted in `dropped_points` (exactly). A batch already peeked from
// a dropped segment may still be delivered by the sender; it is counted as dropped all the same.
//
// Durability: appends go to the kernel at once (one write per record) and are fsync'ed by
// `maybe_sync` at most once per second (the caller calls it from its loop), by a roll, and by
// `sync`/`close`. A crash loses at most the last second of points.
//
// Recovery on open: every segment is scanned and its CRCs checked; a torn or corrupt tail is
// truncated off (counted in `truncated_bytes`) so later appends are clean. Sending resumes at
// the checkpoint; a checkpoint that does not land on a record boundary resumes at the start of
// its segment (a few duplicates are harmless to InfluxDB, gaps are not).
//
// Thread safety: all members may be called from any thread (one mutex); the bus receiver
// appends while the sender peeks and commits.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>

namespace mp::upload {

struct SpoolPosition {
  uint64_t segment = 0;  // segment sequence number
  uint64_t offset = 0;   // byte offset in that segment
  uint64_t index = 0;    // record index in that segment (records before `offset`)
};

struct SpoolBatch {
  std::string body;            // the lines, each followed by '\n'
  size_t count = 0;            // number of lines
  SpoolPosition end;           // pass to commit() once the server accepted `body`
  int64_t oldest_time_ns = 0;  // smallest point time in the batch (0 when empty)
};

struct SpoolStats {
  uint64_t bytes = 0;  // size of all segment files
  uint64_t segments = 0;
  uint64_t points_pending = 0;    // appended and not yet committed
  uint64_t points_appended = 0;   // since open
  uint64_t points_committed = 0;  // since open
  uint64_t dropped_points = 0;    // unsent points deleted because the spool was full (since open)
  uint64_t truncated_bytes = 0;   // torn/corrupt bytes cut off at open
  uint64_t fsyncs = 0;            // fsync/fdatasync calls on segment data and directory
  uint64_t checkpoint_writes = 0;
  uint64_t write_errors = 0;
  int64_t oldest_pending_time_ns = 0;  // point time of the first unsent record, 0 when none
};

class Spool {
 public:
  static constexpr size_t kMaxLineBytes = 1 << 20;

  Spool() = default;
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Creates `dir` when missing, recovers what is there. segment_bytes 0 = automatic.
  // False with `error` set when the directory cannot be used.
  bool open(const std::string& dir, uint64_t max_bytes, uint64_t segment_bytes = 0,
            std::string* error = nullptr);
  bool is_open() const;
  // Flushes and closes; open() may be called again.
  void close();

  // Appends one point. False (nothing written) when not open, the line is empty, longer than
  // kMaxLineBytes or holds a newline, or on an I/O error (counted in write_errors).
  bool append(std::string_view line, int64_t point_time_ns);
  // fdatasync of unsynced appends when the last one was >= 1 s ago (monotonic `now_ns`).
  // True when it synced.
  bool maybe_sync(int64_t now_mono_ns);
  // fdatasync now when anything is unsynced.
  void sync();

  // Up to `max_points` unsent points (and about `max_bytes` of text; at least one point) from
  // the checkpoint on. Does not remove anything.
  SpoolBatch peek(size_t max_points, size_t max_bytes = 16 << 20);
  // Marks everything before `end` as sent: persists the checkpoint, deletes fully sent
  // segments. A position before the current checkpoint (e.g. its segment was dropped since the
  // peek) changes nothing. False when the checkpoint could not be persisted (the in-memory
  // position still advances; a restart would resend those points).
  bool commit(const SpoolPosition& end);

  SpoolStats stats();
  SpoolPosition checkpoint();
  std::string dir() const { return dir_; }

 private:
  struct Segment {
    uint64_t seq = 0;
    uint64_t size = 0;  // valid bytes, including the magic
    uint64_t records = 0;
  };

  std::string seg_path(uint64_t seq) const;
  bool scan_segment(Segment& seg, uint64_t ckpt_offset, uint64_t* ckpt_index);
  bool new_segment_locked(uint64_t seq);
  bool roll_locked();
  void drop_oldest_locked();
  bool write_checkpoint_locked();
  void normalize_locked(SpoolPosition& p);
  Segment* find_locked(uint64_t seq);
  int64_t oldest_time_locked();
  void sync_locked();

  mutable std::mutex mu_;
  std::string dir_;
  bool open_ = false;
  uint64_t max_bytes_ = 0;
  uint64_t segment_bytes_ = 0;
  std::deque<Segment> segs_;
  int wfd_ = -1;  // write fd of segs_.back()
  bool dirty_ = false;
  int64_t last_sync_ns_ = 0;
  SpoolPosition ckpt_;
  uint64_t total_bytes_ = 0;
  uint64_t pending_ = 0;
  int64_t oldest_cache_ = 0;
  bool oldest_known_ = false;
  SpoolStats st_;
};

}  // namespace mp::upload
