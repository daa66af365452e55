// Durable journal: what a worker publishes, kept on disk for the consumers that must not lose
// it (upload, history). docs/DURABILITY.md has the promise this serves; this file has the
// mechanics.
//
// Layout of a journal directory (e.g. <state_dir>/journal/acquire):
//   <20-digit sequence>.jnl   a segment: 8-byte magic "MPJRNL01" (or "MPJRNL02": compressed
//                             records, below), then records
//                             [u32 payload length][u32 CRC-32 of payload][payload], little
//                             endian (the framing of the upload spool, generalised: the payload
//                             is any bytes, here a serialized meterpipe::Envelope)
//   cursor.<consumer>         "<segment> <offset>\n": where that consumer has safely got to
//                             (written by the consumer: save_cursor)
//
// Compressed segments ("MPJRNL02", WriterOptions::compress): a record's payload is
// [u32 length of the original][raw deflate of the original, with the previous record of the
// same segment as preset dictionary]. Consecutive telegrams differ in a few digits, so a
// record shrinks to a few dozen bytes; a reader that starts in the middle of a segment
// rebuilds the chain from the segment's first record.
//
// Writer (one per journal, in the publishing worker):
// - append() queues a copy and returns at once (bounded queue; when full the record is
//   dropped and counted: the real-time path never waits for the disk).
// - A writer thread writes what is queued with one write() at most `commit_ms` after the
//   oldest queued record arrived (group commit). A write() is in the page cache: it survives
//   the death of any process (kill -9 of the worker or of the supervisor).
// - fdatasync every `sync_ms` (and at rotation and stop) bounds what a power cut costs:
//   sync_ms + the kernel's writeback of what was written meanwhile.
// - Segments are `segment_bytes` (a record may make one longer); every open() starts a new
//   segment after cutting a torn tail off the newest one. The oldest segments are deleted
//   once every consumer's cursor is past them, and when the journal is over `max_bytes`
//   (logged and counted, even when a consumer had not read them).
//
// Sealing: a finished segment has no write permission (the writer takes it away before it
// creates the next segment, when it closes, and at open from what an earlier writer left);
// a reader at the end of an unsealed segment waits there without listing the directory, but
// once every 10 s it lists anyway (segments of an older version; a file system without
// permissions, where a seal fails: logged by the writer). Root ignores the seal: it is a
// sign for readers, not a protection.
//
// Reader (in a consumer): next() returns the record at a position and the position after it;
// it moves from a finished (sealed) segment to the next, skips to the oldest segment when the
// one it was in has been deleted (counted as lost), waits at an incomplete record at the end
// of the segment the writer is in, and skips the rest of a segment at a corrupt record
// (counted).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mp::journal {

constexpr uint64_t kSegmentHeader = 8;
constexpr uint64_t kRecordHeader = 8;
constexpr uint32_t kMaxPayload = 16u << 20;

struct Position {
  uint64_t segment = 0;  // 0 = before the first segment
  uint64_t offset = 0;   // byte offset in that segment
  bool operator==(const Position&) const = default;
  auto operator<=>(const Position&) const = default;
};

// Framing of one record (header + payload).
std::string frame_record(std::string_view payload);

// Segment file name of a sequence number ("00000000000000000042.jnl").
std::string segment_name(uint64_t seq);
// Sequence numbers of the segments in `dir`, ascending.
std::vector<uint64_t> list_segments(const std::string& dir);

// Cursor files. save_cursor writes atomically (temp file, fsync, rename, fsync of the dir).
bool save_cursor(const std::string& dir, const std::string& consumer, Position p);
// False when there is none or it is unreadable.
bool load_cursor(const std::string& dir, const std::string& consumer, Position& p);

struct WriterOptions {
  std::string dir;
  uint64_t segment_bytes = 1 << 20;
  uint64_t max_bytes = 64ull << 20;
  int64_t commit_ms = 1000;  // general.durability_s
  int64_t sync_ms = 60000;
  size_t queue_max = 20000;  // records waiting for the writer thread
  bool compress = false;     // compressed segments (above)
};

struct WriterStats {
  uint64_t appended = 0;            // records accepted by append()
  uint64_t written = 0;             // records written to a segment
  uint64_t dropped_queue_full = 0;  // records append() refused (the writer could not keep up)
  uint64_t write_errors = 0;        // records lost to a failed write
  uint64_t segments_deleted = 0;    // read by every consumer
  uint64_t segments_dropped = 0;    // deleted over max_bytes
  uint64_t dropped_bytes = 0;       // bytes of those a consumer had not read
  uint64_t truncated_bytes = 0;     // torn tail cut off at open
  uint64_t writes = 0;              // write() calls
  uint64_t fsyncs = 0;
  uint64_t bytes = 0;  // size of all segments
  uint64_t segments = 0;
};

class Writer {
 public:
  Writer() = default;
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Creates the directory, recovers the newest segment, starts a new one and the writer
  // thread. False with `error` when the directory cannot be used.
  bool open(const WriterOptions& opt, std::string& error);
  // Queues one record; never blocks on the disk. False when not open or the queue is full.
  bool append(std::string payload);
  // Writes what is queued, fdatasyncs, stops the thread. Idempotent.
  void close();
  WriterStats stats() const;

 private:
  void run();
  void write_batch(std::vector<std::string>& batch);
  bool new_segment();
  void sync_active();
  void enforce_bounds();
  std::string path_of(uint64_t seq) const;
  void seal_logged(const std::string& path);  // seals a finished segment; a failure logged once

  WriterOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  int64_t oldest_queued_ns_ = 0;
  bool stop_ = false;
  bool open_ = false;
  std::thread thread_;
  // writer-thread state
  std::vector<std::pair<uint64_t, uint64_t>> segs_;  // (seq, size)
  int fd_ = -1;
  std::string prev_;  // the previous record of the active segment (compression dictionary)
  bool unsynced_ = false;
  int64_t last_sync_ns_ = 0;
  bool seal_failed_logged_ = false;
  WriterStats st_;  // under mu_
};

struct ReaderStats {
  uint64_t records = 0;
  uint64_t lost_segments = 0;  // the reader's segment was deleted before it was read
  uint64_t corrupt = 0;        // corrupt records (the rest of their segment skipped)
  uint64_t listings = 0;       // directory listings at the end of a segment
};

class Reader {
 public:
  // `unsealed_list_s`: how often the end of an unsealed segment is checked for a later one
  // anyway (segments an older version or a file system without permissions left unsealed).
  explicit Reader(std::string dir, double unsealed_list_s = 10)
      : dir_(std::move(dir)), unsealed_list_ns_(int64_t(unsealed_list_s * 1e9)) {}
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  enum class Result { record, none };
  // The record at `pos` (moving on to later segments as needed): its payload, and `pos`
  // becomes the position after it. `none`: nothing more for now (pos may have moved to the
  // start of a later segment).
  Result next(Position& pos, std::string& payload);
  const ReaderStats& stats() const { return st_; }
  const std::string& dir() const { return dir_; }

 private:
  bool open_segment(uint64_t seq);
  // The original payload of the compressed record `stored` that starts at `offset` of the
  // open segment; false when it does not decompress.
  bool expand(uint64_t offset, const std::string& stored, std::string& payload);
  // Moves `pos` to the start of the first segment after pos.segment; false when none.
  bool advance(Position& pos, const std::vector<uint64_t>& segs);

  std::string dir_;
  int fd_ = -1;
  uint64_t fd_seq_ = 0;
  bool header_ok_ = false;   // the open segment's magic was read
  bool compressed_ = false;  // the open segment's records are compressed
  std::string prev_;         // original payload of the record that ends at prev_end_
  uint64_t prev_end_ = 0;
  int64_t unsealed_list_ns_;
  int64_t listed_ns_ = 0;  // the last listing at the end of a segment (monotonic)
  ReaderStats st_;
};

}  // namespace mp::journal
