// The actuate worker: engine + outputs + bus + control socket + persisted state.
#pragma once

#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "actuate/outputs.h"
#include "actuate/rules.h"
#include "bus/control.h"
#include "bus/worker.h"
#include "journal/journal.h"

namespace mp::actuate {

class Actuator {
 public:
  explicit Actuator(Worker& w);
  ~Actuator();
  int run();

 private:
  struct Out {
    std::unique_ptr<Output> output;
    bool async = true;  // run set() on its own thread (command, http, gpiod)
    std::future<SwitchResult> pending;
    Decision decision;
    int64_t trigger_wall_ns = 0, trigger_mono_ns = 0;  // reading the decision was taken on
    // An engine decision that came while the start-up restore of this relay was in flight:
    // applied when the restore is done (dropping it would leave the engine waiting on a
    // switch that never runs, and the restore's result would confirm it).
    std::optional<Decision> queued;
    int64_t queued_wall_ns = 0, queued_mono_ns = 0;
  };
  void apply(const std::vector<Decision>& ds, int64_t now);
  void start(Out& o, int64_t now);  // runs o.decision on its output (inline or on a thread)
  void finish(Out& o, const SwitchResult& r, int64_t now);
  void collect(int64_t now);
  std::string control_reply(const std::string& request, int64_t now);
  std::string status_json(int64_t now);
  // Writes the state (on the saver thread): after a decision, every kSaveIntervalS, and at
  // a clean stop (clean = true: the file then tells the exact downtime at the next start).
  void save(bool clean = false);
  static constexpr double kSaveIntervalS = 300;

  Worker& w_;
  // every relay event published is also journaled for upload (docs/DURABILITY.md)
  std::unique_ptr<journal::Writer> journal_;
  Engine engine_;
  std::map<std::string, Out> outs_;
  std::unique_ptr<bus::ControlServer> ctl_;  // null when its endpoint could not be bound
  std::string state_file_;
  bool dirty_ = false;
  std::map<std::string, std::string> last_reason_;
  int wake_fd_ = -1;  // eventfd: an output finished switching
  // receive stamps of the reading being stepped (0 outside a reading's step)
  int64_t trigger_wall_ns_ = 0, trigger_mono_ns_ = 0;
  int64_t engine_now() const;
  // When the engine's next tick without data is due (engine time), nullopt: not before an
  // event (see run()).
  std::optional<int64_t> next_tick(int64_t last_step) const;
  // engine time of a confirm or an override since the engine's last step
  std::optional<int64_t> changed_at_;
  int64_t wall0_ = 0, mono0_ = 0;  // engine clock: wall at start + monotonic since
  bool restored_ = false;
  // persisted state, written by its own thread
  void saver_loop();
  std::thread saver_;
  std::mutex save_mu_;
  std::condition_variable save_cv_;
  EngineState to_save_;
  bool save_pending_ = false, save_stop_ = false;
};

}  // namespace mp::actuate
