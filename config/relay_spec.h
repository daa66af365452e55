// The rules engine's view of the relay config (actuate/rules.h), so config validation and
// the actuate worker use one conversion.
#pragma once

#include <vector>

#include "actuate/rules.h"
#include "config/config.h"

namespace mp::config {

actuate::RelaySpec to_relay_spec(const Relay& r);
actuate::SiteSpec to_site_spec(const Config& c);

}  // namespace mp::config
