// Days from the minutes in the store: reads the rows around a day's midnights and the day's
// quarter hours, and writes the day (history/days.h does the arithmetic).
#pragma once

#include <cstdint>

#include "history/days.h"
#include "history/store.h"

namespace mp::history {

// The day `d` of `meter` from the minutes in the store (not written).
DayRow compute_day(Store& s, int64_t meter, const LocalDay& d);
// Recomputes and writes every local day of `meter` that rows in [t_lo, t_hi] (Unix seconds,
// just written) can change: from the day of the row before t_lo through the day of t_hi.
// Returns the number of days written.
int update_days(Store& s, int64_t meter, int64_t t_lo, int64_t t_hi);

}  // namespace mp::history
