#include "history/worker_journal_replay.h"

#include <sys/stat.h>

#include "common/log.h"
#include "journal/for_worker.h"
#include "meterpipe.pb.h"
#include "process/reading_proto.h"

namespace mp::history {

namespace {
constexpr const char* kConsumer = "history";
}

JournalReplay::JournalReplay(const config::Config& cfg)
    : dir_(journal::dir_of(cfg, "acquire")), decoders_(cfg) {
  journal::load_cursor(dir_, kConsumer, saved_);
}

ReplayStats JournalReplay::read_all(const std::function<void(const Reading&)>& take,
                                    const std::function<void()>& progress) {
  ReplayStats st;
  struct stat sb {};
  if (::stat(dir_.c_str(), &sb) != 0) return st;
  journal::Reader reader(dir_);
  journal::Position pos = saved_;
  std::string payload;
  while (reader.next(pos, payload) == journal::Reader::Result::record) {
    if (++st.records % 512 == 0 && progress) progress();
    meterpipe::Envelope env;
    if (!env.ParseFromString(payload) || !env.has_raw()) {
      ++st.bad_records;
      continue;
    }
    meterpipe::Reading reading;
    std::string error;
    const auto status = decoders_.decode(env.raw(), reading, error);
    if (status == process::Status::error) ++st.decode_errors;
    if (status != process::Status::reading) continue;
    Reading r;
    from_proto(reading, r);
    ++st.readings;
    take(r);
  }
  const auto segs = journal::list_segments(dir_);
  newest_at_last_commit_ = segs.empty() ? 0 : segs.back();
  return st;
}

void JournalReplay::committed() {
  const journal::Position p{newest_at_last_commit_, 0};
  const auto segs = journal::list_segments(dir_);
  newest_at_last_commit_ = segs.empty() ? newest_at_last_commit_ : segs.back();
  if (p.segment == 0 || p == saved_) return;
  if (journal::save_cursor(dir_, kConsumer, p))
    saved_ = p;
  else
    log::warn("history: cannot save its cursor in %s", dir_.c_str());
}

}  // namespace mp::history
