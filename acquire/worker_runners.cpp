#include "acquire/worker_runners.h"

#include <map>

#include "journal/journal.h"
#include "protocols/registry.h"

namespace mp::acquire {

void WorkerContext::publish(meterpipe::RawFrame&& raw) {
  meterpipe::Envelope env;
  const std::string source = raw.source();
  *env.mutable_raw() = std::move(raw);
  w_.pub().publish(bus::topic_raw(source), env);
  if (journal_) journal_->append(env.SerializeAsString());  // queued: never waits for disk
  w_.count("frames_" + source);
}

std::vector<std::unique_ptr<protocols::Runner>> make_runners(protocols::RunContext& ctx,
                                                             const config::Config& cfg,
                                                             std::vector<std::string>& problems) {
  // family -> its meters, in config order
  std::map<std::string_view, std::vector<const config::Meter*>> families;
  for (const auto& m : cfg.meters) {
    const protocols::Spec* d = protocols::find(m.protocol);
    if (!d) {
      problems.push_back("meter " + m.name + ": unknown protocol \"" + m.protocol + "\"");
      continue;
    }
    families[d->family].push_back(&m);
  }
  std::vector<std::unique_ptr<protocols::Runner>> out;
  for (const auto& [family, meters] : families) {
    for (const auto* d : protocols::all()) {
      const auto& rt = protocols::runtime(*d);
      if (d->family != family || !rt.make_runners) continue;
      rt.make_runners(ctx, meters, out, problems);
      break;
    }
  }
  return out;
}

}  // namespace mp::acquire
