// Waiting and timing helpers shared by the orchestrator, its plan runs and the backfill runs.
#pragma once

#include <chrono>
#include <cstdint>

#include "tide/duration.h"

namespace tide {

using SteadyClock = std::chrono::steady_clock;

// Milliseconds since `t` on the steady clock.
int64_t MillisSince(SteadyClock::time_point t);

// The wait before retry `attempt` (0 for the first): `base` doubled per attempt, capped at
// `cap`, with jitter (a random point in its upper half) so that workers do not retry in step.
Millis Backoff(int attempt, Millis base, Millis cap);

}  // namespace tide
