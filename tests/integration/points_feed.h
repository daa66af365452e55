// A Feed for the uploader's tests and benches: points handed in by the caller, served in
// order as the journals would serve them (the journal feed itself is tested in
// tests/unit/test_upload_journal.cpp). A mark is the number of points read.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "upload/journal_feed.h"

namespace mp::test {

class PointsFeed : public mp::upload::Feed {
 public:
  void add_line(const std::string& line, int64_t t) {
    std::lock_guard lk(mu_);
    pts_.push_back(mp::upload::Point{line, t});
  }
  size_t read(std::vector<mp::upload::Point>& out, size_t max_points) override {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (; next_ < pts_.size() && n < max_points; ++n) out.push_back(pts_[next_++]);
    return n;
  }
  Marks marks() const override {
    std::lock_guard lk(mu_);
    return {mp::journal::Position{1, next_}};
  }
  bool save(const Marks& m) override {
    std::lock_guard lk(mu_);
    saved_ = m;
    return true;
  }
  const Marks& saved() const override { return saved_; }
  uint64_t read_count() const {
    std::lock_guard lk(mu_);
    return next_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<mp::upload::Point> pts_;
  uint64_t next_ = 0;
  Marks saved_{mp::journal::Position{}};
};

}  // namespace mp::test
