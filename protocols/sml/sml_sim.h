// A simulated SML meter (a three-phase German mME with a solar system behind it): the
// household and solar profile of the simulated P1 meter (protocols/simulate/dsmr_sim.h), sent
// as an SML 1.04 file as such meters push it every second: 1.8.0, 2.8.0 (Wh), 16.7.0 (signed
// net power), 36/56/76.7.0, 32/52/72.7.0, 31/51/71.7.0, 14.7.0 and 96.1.0. Pure and
// deterministic: the frame depends only on the seed, the state and the time passed in.
#pragma once

#include <cstdint>
#include <string>

namespace mp::sml {

struct SimState {
  uint64_t seed = 1;
  bool started = false;
  int64_t last_ns = 0;
  double import_wh = 0, export_wh = 0;
  uint32_t transaction = 0x1000, sec_index = 0;
};

// The next transport frame at `unix_ns`. Updates `state`.
std::string make_sim_frame(int64_t unix_ns, SimState& state);

}  // namespace mp::sml
