// The live page's files, embedded into meterpipe-serve at build time from serve/web/ by
// serve/embed.cmake (no CDN, no download: the page works on a Pi without internet).
#pragma once

#include <vector>

#include "serve/api.h"

namespace mp::serve {

// index.html as "/", every other file of serve/web/ as "/static/<name>".
const std::vector<Asset>& web_assets();

}  // namespace mp::serve
