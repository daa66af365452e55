#include "upload/journal_feed.h"

namespace mp::upload {

JournalFeed::JournalFeed(const config::Config& cfg, LineProtocolOptions lp, std::string consumer)
    : lp_(std::move(lp)), journals_(cfg, std::move(consumer)) {}

size_t JournalFeed::take(const process::JournalFeed::Item& item, std::vector<Point>& out) {
  if (!item.reading) {  // a relay event
    std::string line = encode_relay(item.env, lp_.precision);
    if (line.empty()) {
      ++refused_;
      return 0;
    }
    out.push_back(Point{std::move(line), item.env.send_time_ns()});
    ++points_;
    return 1;
  }
  auto res = encode(*item.reading, lp_);
  if (!res.ok()) {
    ++refused_;
    return 0;
  }
  for (auto& p : res.points) out.push_back(Point{std::move(p.line), p.time_ns});
  points_ += res.points.size();
  return res.points.size();
}

size_t JournalFeed::read(std::vector<Point>& out, size_t max_points) {
  return journals_.read([&](const process::JournalFeed::Item& item) { return take(item, out); },
                        max_points);
}

FeedStats JournalFeed::stats() const {
  const process::JournalStats j = journals_.stats();
  FeedStats s;
  s.records = j.records;
  s.points = points_;
  s.decode_errors = j.decode_errors;
  s.refused = refused_;
  s.lost_segments = j.lost_segments;
  s.corrupt = j.corrupt;
  s.bad_records = j.bad_records;
  return s;
}

}  // namespace mp::upload
