// Conversion of decoded values (common/reading.h) into the bus message.
#pragma once

#include "common/reading.h"
#include "meterpipe.pb.h"

namespace mp {

void to_proto(const Reading& in, meterpipe::Reading* out);
void from_proto(const meterpipe::Reading& in, Reading& out);

}  // namespace mp
