// Fixed-size history of one series: time buckets of equal width in a ring (pure, no clock).
//
// A bucket keeps the sum, count, min and max of the samples whose time falls in it, so a
// 1-second ring of 3600 buckets is "the last hour, one point per second" and a 1-minute ring
// of 1440 buckets is "the last 24 hours, minute averages". Memory is fixed at construction:
// a sample only ever overwrites the bucket of its own slot, never allocates. `T` is the
// type the sums are kept in: float for charted power (24 bytes a bucket), double where the
// average of a large counter (kWh registers) must keep every digit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mp::serve {

struct HistoryPoint {
  int64_t t_ms = 0;  // start of the bucket, ms since the Unix epoch
  double avg = 0, min = 0, max = 0;
  uint32_t n = 0;  // samples in the bucket
};

template <class T>
class BucketRingT {
 public:
  BucketRingT(size_t buckets, int64_t width_ms);

  // Adds a sample. A sample older than what its slot holds now (more than one ring length
  // behind the newest) is ignored; a newer one resets the slot first.
  void add(int64_t t_ms, double v);
  // Buckets with data whose start lies in (now_ms - span_ms, now_ms], oldest first.
  std::vector<HistoryPoint> range(int64_t now_ms, int64_t span_ms) const;
  // Sample-weighted average over (now_ms - span_ms, now_ms]; false when there is no sample.
  bool average(int64_t now_ms, int64_t span_ms, double& avg, uint32_t* samples = nullptr) const;
  // Samples in (now_ms - span_ms, now_ms].
  uint64_t count(int64_t now_ms, int64_t span_ms) const;

  size_t buckets() const { return slots_.size(); }
  int64_t width_ms() const { return width_ms_; }
  int64_t newest_ms() const { return newest_id_ == kEmpty ? 0 : newest_id_ * width_ms_; }

 private:
  static constexpr int64_t kEmpty = INT64_MIN;
  struct Slot {
    int64_t id = kEmpty;  // bucket number (t_ms / width); kEmpty = never used
    T sum = 0, min = 0, max = 0;
    uint32_t n = 0;
  };
  static int64_t floor_div(int64_t a, int64_t b);
  template <class F>
  void each(int64_t now_ms, int64_t span_ms, F f) const;

  std::vector<Slot> slots_;
  int64_t width_ms_;
  int64_t newest_id_ = kEmpty;
};

using BucketRing = BucketRingT<double>;
using CompactRing = BucketRingT<float>;

// The two resolutions every charted series keeps: 1 h of seconds, 24 h of minutes
// (120 KiB together).
struct SeriesHistory {
  static constexpr size_t kSeconds = 3600;
  static constexpr size_t kMinutes = 1440;
  CompactRing seconds{kSeconds, 1000};
  CompactRing minutes{kMinutes, 60000};
  void add(int64_t t_ms, double v) {
    seconds.add(t_ms, v);
    minutes.add(t_ms, v);
  }
};

}  // namespace mp::serve
