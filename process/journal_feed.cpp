#include "process/journal_feed.h"

#include <sys/inotify.h>
#include <unistd.h>

#include "common/log.h"

namespace mp::process {

JournalFeed::JournalFeed(const config::Config& cfg, std::string consumer)
    : consumer_(std::move(consumer)), decoders_(cfg) {}

JournalFeed::~JournalFeed() {
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

bool JournalFeed::watch() {
  if (all_watched_) return true;
  if (inotify_fd_ < 0) inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) return false;
  bool all = true;
  for (auto& s : sources_) {
    if (!s.watched)
      s.watched =
          inotify_add_watch(inotify_fd_, s.dir.c_str(),
                            IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_ATTRIB /* seal */) >= 0;
    all = all && s.watched;
  }
  all_watched_ = all;
  return all;
}

void JournalFeed::drain_changes() {
  if (inotify_fd_ < 0) return;
  alignas(inotify_event) char buf[4096];
  while (::read(inotify_fd_, buf, sizeof buf) > 0) {
  }
}

void JournalFeed::add_source(const std::string& dir, Kind kind, const journal::Position* from) {
  Source s;
  s.dir = dir;
  s.kind = kind;
  s.reader = std::make_unique<journal::Reader>(dir);
  journal::Position saved;
  const bool have_cursor = journal::load_cursor(dir, consumer_, saved);
  s.pos = from ? *from : saved;
  // A position past every segment there is (a database restored beside a new journal, a
  // journal directory deleted): the reader would wait there for good while the writer goes
  // on below it. From the oldest record instead; what was taken before is known as such.
  const auto segs = journal::list_segments(dir);
  if (!segs.empty() && s.pos.segment > segs.back()) {
    log::warn(
        "journal %s: %s's position (segment %llu) is past its newest segment (%llu): "
        "reading from the oldest record",
        dir.c_str(), consumer_.c_str(), static_cast<unsigned long long>(s.pos.segment),
        static_cast<unsigned long long>(segs.back()));
    s.pos = journal::Position{};
  } else if (from || have_cursor)
    log::info("journal %s: %s resumes at segment %llu offset %llu", dir.c_str(), consumer_.c_str(),
              static_cast<unsigned long long>(s.pos.segment),
              static_cast<unsigned long long>(s.pos.offset));
  s.clean = s.pos;
  saved_.push_back(saved);
  sources_.push_back(std::move(s));
}

size_t JournalFeed::take_record(Source& s, const std::string& payload, const Take& take) {
  meterpipe::Envelope env;
  if (!env.ParseFromString(payload)) {
    ++st_.bad_records;
    return 0;
  }
  if (s.kind == Kind::relay_events) {
    if (!env.has_relay()) {
      ++st_.bad_records;
      return 0;
    }
    return take(Item{s.kind, env, nullptr});
  }
  if (!env.has_raw()) {
    ++st_.bad_records;
    return 0;
  }
  const auto& raw = env.raw();
  meterpipe::Reading reading;
  std::string error;
  switch (decoders_.decode(raw, reading, error)) {
    case Status::pending:
      s.partial.insert(raw.source());
      return 0;
    case Status::error:
      s.partial.erase(raw.source());
      ++st_.decode_errors;
      return 0;
    case Status::reading:
      s.partial.erase(raw.source());
      break;
  }
  return take(Item{s.kind, env, &reading});
}

size_t JournalFeed::read(const Take& take, size_t max, size_t max_records) {
  size_t used = 0, records = 0;
  bool more = true;
  std::string payload;
  while (more && used < max && records < max_records) {
    more = false;
    for (auto& s : sources_) {  // in turn, so one busy journal does not starve the other
      if (used >= max || records >= max_records) break;
      if (s.reader->next(s.pos, payload) != journal::Reader::Result::record) continue;
      ++st_.records;
      ++records;
      more = true;
      used += take_record(s, payload, take);
      if (s.partial.empty()) s.clean = s.pos;
    }
  }
  return used;
}

JournalFeed::Marks JournalFeed::marks() const {
  Marks m;
  for (const auto& s : sources_) m.push_back(s.clean);
  return m;
}

bool JournalFeed::save(const Marks& m) {
  bool ok = true;
  for (size_t i = 0; i < sources_.size() && i < m.size(); ++i) {
    if (m[i] == saved_[i] || m[i].segment == 0) continue;
    if (journal::save_cursor(sources_[i].dir, consumer_, m[i]))
      saved_[i] = m[i];
    else
      ok = false;
  }
  return ok;
}

JournalStats JournalFeed::stats() const {
  JournalStats s = st_;
  for (const auto& src : sources_) {
    s.lost_segments += src.reader->stats().lost_segments;
    s.corrupt += src.reader->stats().corrupt;
  }
  return s;
}

}  // namespace mp::process
