#pragma once
// SPEC §3 conflict rules between routes; each problem names both route ids.
#include <vector>

#include "ringfwd/config/config.hpp"

namespace rf::routing {

// Returns every conflict in cfg.routes (plus blocked ports), path "routes[i]..." of the
// later route of each pair. Empty means the set may be served as a whole.
std::vector<config::Problem> find_conflicts(const config::Config& cfg);

}  // namespace rf::routing
