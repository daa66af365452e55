// Reading and validating the [mqtt] table (called by config.cpp's load_string).
#pragma once

#include <toml++/toml.h>

#include <string>
#include <vector>

#include "config/config.h"

namespace mp::config {

// `t` may be null (no [mqtt] table). Every problem is appended to `errors` as
// FILE:LINE:COL: mqtt.key: message; unknown keys are refused. `check_files`: also check
// that the files it names (password, CA, client certificate and key) are readable (off for
// commands that need only run_dir, like LoadOptions::check_key_files).
void read_mqtt(const toml::table* t, const std::string& file, bool check_files, Mqtt& out,
               std::vector<Error>& errors);

}  // namespace mp::config
