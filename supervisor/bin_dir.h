// Where `meterpipe run` finds the meterpipe-<worker> executables when neither --bin-dir nor
// general.bin_dir says: next to the `meterpipe` executable (a build tree: build/bin), else in
// the installed worker directory relative to it (/usr/bin/meterpipe ->
// /usr/lib/meterpipe/meterpipe-acquire; the same for /usr/local).
#pragma once

#include <string>

namespace mp::supervisor {

// `exe_dir`: directory of the running `meterpipe`; `relative`: the installed worker directory
// relative to it ("../lib/meterpipe"). Returns exe_dir when it holds meterpipe-acquire (a
// build tree), otherwise exe_dir + "/" + relative, normalised ("/usr/lib/meterpipe").
std::string choose_worker_dir(const std::string& exe_dir, const std::string& relative);

// choose_worker_dir(self_dir(), the relative directory the build was configured with).
std::string default_worker_dir();

}  // namespace mp::supervisor
