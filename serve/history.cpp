#include "serve/history.h"

#include <algorithm>
#include <cmath>

namespace mp::serve {

template <class T>
BucketRingT<T>::BucketRingT(size_t buckets, int64_t width_ms)
    : slots_(std::max<size_t>(buckets, 1)), width_ms_(std::max<int64_t>(width_ms, 1)) {}

template <class T>
int64_t BucketRingT<T>::floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

template <class T>
void BucketRingT<T>::add(int64_t t_ms, double v) {
  if (!std::isfinite(v)) return;
  const int64_t id = floor_div(t_ms, width_ms_);
  const int64_t n = int64_t(slots_.size());
  if (newest_id_ != kEmpty && id <= newest_id_ - n) return;  // older than the ring
  Slot& s = slots_[size_t(((id % n) + n) % n)];
  if (s.id != id) {
    if (s.id != kEmpty && s.id > id) return;  // the slot already holds something newer
    s = Slot{};
    s.id = id;
  }
  const T f = T(v);
  if (s.n == 0) {
    s.min = s.max = f;
  } else {
    s.min = std::min(s.min, f);
    s.max = std::max(s.max, f);
  }
  s.sum += f;
  ++s.n;
  if (newest_id_ == kEmpty || id > newest_id_) newest_id_ = id;
}

template <class T>
template <class F>
void BucketRingT<T>::each(int64_t now_ms, int64_t span_ms, F f) const {
  if (newest_id_ == kEmpty || span_ms <= 0) return;
  const int64_t n = int64_t(slots_.size());
  const int64_t last = floor_div(now_ms, width_ms_);
  // bucket starts in (now - span, now]
  int64_t first = floor_div(now_ms - span_ms, width_ms_) + 1;
  if (first < last - n + 1) first = last - n + 1;
  for (int64_t id = first; id <= last; ++id) {
    const Slot& s = slots_[size_t(((id % n) + n) % n)];
    if (s.id == id && s.n > 0) f(s);
  }
}

template <class T>
std::vector<HistoryPoint> BucketRingT<T>::range(int64_t now_ms, int64_t span_ms) const {
  std::vector<HistoryPoint> out;
  each(now_ms, span_ms, [&](const Slot& s) {
    out.push_back({s.id * width_ms_, double(s.sum) / s.n, double(s.min), double(s.max), s.n});
  });
  return out;
}

template <class T>
bool BucketRingT<T>::average(int64_t now_ms, int64_t span_ms, double& avg,
                             uint32_t* samples) const {
  double sum = 0;  // accumulated in double whatever T is
  uint64_t n = 0;
  each(now_ms, span_ms, [&](const Slot& s) {
    sum += s.sum;
    n += s.n;
  });
  if (samples) *samples = uint32_t(n);
  if (n == 0) return false;
  avg = sum / double(n);
  return true;
}

template <class T>
uint64_t BucketRingT<T>::count(int64_t now_ms, int64_t span_ms) const {
  uint64_t n = 0;
  each(now_ms, span_ms, [&](const Slot& s) { n += s.n; });
  return n;
}

template class BucketRingT<float>;
template class BucketRingT<double>;

}  // namespace mp::serve
