// The acquire worker's side of the protocols' runners: a RunContext over the worker (bus
// publisher, health counters, watchdog slots) and the runners of every configured meter,
// made by each meter's protocol (protocols/registry.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bus/worker.h"
#include "protocols/protocol.h"

namespace mp::journal {
class Writer;
}

namespace mp::acquire {

// Publishes each frame as raw/<meter>, appends it to the journal (when there is one: upload
// reads it, docs/ARCHITECTURE.md "Durability") and counts frames_<meter>.
class WorkerContext : public protocols::RunContext {
 public:
  WorkerContext(Worker& w, journal::Writer* journal) : w_(w), journal_(journal) {}
  bool running() const override { return w_.running(); }
  void progress(int slot) override { w_.progress(slot); }
  void publish(meterpipe::RawFrame&& raw) override;
  void count(const std::string& c, uint64_t n) override { w_.count(c, n); }
  void set_counter(const std::string& c, uint64_t v) override { w_.set_counter(c, v); }
  void gauge(const std::string& g, double v) override { w_.gauge(g, v); }
  void info(const std::string& k, const std::string& v) override { w_.info(k, v); }

 private:
  Worker& w_;
  journal::Writer* journal_;
};

// Runners for every configured meter: the meters of one protocol family go to that family's
// runner factory together (meters on one line or gateway share a connection). Problems:
// one line each.
std::vector<std::unique_ptr<protocols::Runner>> make_runners(protocols::RunContext& ctx,
                                                             const config::Config& cfg,
                                                             std::vector<std::string>& problems);

}  // namespace mp::acquire
