// source = "simulate": a DSMR 5 meter made up on the fly (protocols/simulate/dsmr_sim.h),
// at rate_hz telegrams per second and `speed` simulated seconds per real second.
#pragma once

#include <memory>

#include "protocols/protocol.h"

namespace mp::protocols::simulate {

std::unique_ptr<Runner> make_runner(RunContext& ctx, const config::Meter& m);

}  // namespace mp::protocols::simulate
