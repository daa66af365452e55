// Reading and validating [history] and [[tariff]] (called by config.cpp's load_string).
#pragma once

#include <toml++/toml.h>

#include <string>
#include <vector>

#include "config/config.h"

namespace mp::config {

// `t` may be null (no [history] table). Problems are appended to `errors` as
// FILE:LINE:COL: history.key: message; unknown keys are refused.
void read_history(const toml::table* t, const std::string& file, History& out,
                  std::vector<Error>& errors);
// `a` may be null (no [[tariff]]). Sorted by valid_from; two with one date are an error.
void read_tariffs(const toml::node* a, const std::string& file, std::vector<Tariff>& out,
                  std::vector<Error>& errors);

}  // namespace mp::config
