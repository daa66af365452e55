#include "protocols/simulate/sim_runner.h"

#include "common/clock.h"
#include "common/log.h"
#include "protocols/runner_support.h"
#include "protocols/simulate/dsmr_sim.h"

namespace mp::protocols::simulate {

namespace {

class SimRunner : public Runner {
 public:
  SimRunner(RunContext& ctx, const config::Meter& m) : ctx_(ctx), m_(m) {}
  void run(int slot) override {
    mp::dsmr::SimState state;
    state.seed = uint64_t(m_.seed);
    const int64_t wall0 = clock::wall_ns(), mono0 = clock::mono_ns();
    const int64_t period = int64_t(1e9 / m_.rate_hz);
    log::info("meter %s: simulated DSMR 5 meter, %.3g telegram/s, time x%.3g", m_.name.c_str(),
              m_.rate_hz, m_.speed);
    for (int64_t k = 1; ctx_.running(); ++k) {
      if (!sleep_until(ctx_, slot, mono0 + k * period)) break;
      const int64_t mono = clock::mono_ns();
      const int64_t sim_time = wall0 + int64_t(double(mono - mono0) * m_.speed);
      std::string t = mp::dsmr::make_telegram(sim_time, state);
      ctx_.publish(make_raw(m_.name, "dsmr", std::move(t), clock::wall_ns(), mono));
    }
  }

 private:
  RunContext& ctx_;
  const config::Meter& m_;
};

}  // namespace

std::unique_ptr<Runner> make_runner(RunContext& ctx, const config::Meter& m) {
  return std::make_unique<SimRunner>(ctx, m);
}

}  // namespace mp::protocols::simulate
