// What each protocol does (runners, decoders, CLI commands), by its Spec.
#pragma once

#include "protocols/specs.h"

namespace mp::protocols {

// The runtime of a protocol of protocols/all().
const Runtime& runtime(const Spec& spec);

}  // namespace mp::protocols
