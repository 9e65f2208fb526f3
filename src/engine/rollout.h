// A plan on a database group: which databases start when, whether contract may begin, and the
// rollout at a glance. Pure: the databases' states in, decisions out.
#pragma once

#include <string>
#include <vector>

#include "engine/phase.h"
#include "tide/plan.h"

namespace tide {

// One database of a rollout, as its tide schema (and this daemon's runs) say.
struct RolloutMember {
  std::string database;
  bool known = false;     // its database has answered (else unreachable so far)
  bool recorded = true;   // its tide schema holds the plan (else it is not part of the rollout)
  PlanState state = PlanState::kAccepted;
  bool started = false;   // a run began (or begins now); false with kAccepted: waits its turn
  bool ready = false;     // its gates pass and contract waits for the others' (together)
  // Run by another tided (it holds the database's lease): it counts against that one's
  // max_parallel, not this one's, and its sessions against its server's budget all the same.
  bool elsewhere = false;
  // Ready and parked: its run ended (no session, no lease) until the rollout releases the
  // contract; then it starts again like a waiting database, its gates read once more.
  bool parked = false;
  std::string server;     // the PostgreSQL server it is on ("host:port"; "" unknown)
  int64_t sessions = 0;   // the sessions its run needs at most (SessionsOf)
};

// The waiting reason a database of a `contract: together` rollout stores while it is ready: how
// a tided that does not run it learns that it is.
constexpr const char* kReadyForContract = "the gates pass; contract waits for the other databases of group `";
bool ReadyForContract(PlanState state, const std::string& waiting_reason);

// The sessions one database's run of `plan` holds at most: its own, the health monitor's, the
// lease keeper's, the blocker watcher's (during a step), and one per worker of its widest
// backfill task (`default_workers` where a task says none).
int64_t SessionsOf(const Plan& plan, int64_t default_workers);

struct RolloutDecision {
  std::vector<std::string> start;  // databases to start now, in the group's order
  bool contract_allowed = true;    // contract may begin (together: every database is ready)
  bool halted = false;             // on_failure halt and a database failed: nothing new starts
  bool canary = false;             // the canary databases are still on their way
  bool over = false;               // every database finished for good (done or aborted)
  bool all_done = false;           // every database is done
  bool release = false;            // together: every database was ready; parked ones go on
};

// The canary (the group's first `canary` databases) runs alone, up to max_parallel at once,
// until each is done (with contract: together, until each is ready); then the others, in
// order, max_parallel in flight (started, not finished, not ready) at once. A database that
// failed or was aborted halts the rollout with on_failure: halt (a canary's, whatever
// on_failure says: that is what a canary is for), and keeps a together contract waiting, since
// its gates never pass. Nothing starts while a database has not answered: the
// rollout cannot tell what it holds. With `server_budget` above 0, a database does not start
// while the databases in flight on its server need so many sessions that its own would go over
// the budget (one database always may, on a server with none in flight); a later one on
// another server may start meanwhile. With contract: together, once every database is ready
// (`released`: it was once, as the caller kept; or a database is contracting or done), the
// parked databases start again in the
// same way, max_parallel at a time within the budget, each to read its gates once more and
// contract: so the ready databases that wait hold no session.
RolloutDecision DecideRollout(const Rollout& rollout, const std::vector<RolloutMember>& members,
                              int64_t server_budget = 0, bool released = false);

// A member's state in words: "waiting", "ready" (for contract), or its PlanState ("backfilling").
std::string RolloutLabel(const RolloutMember& m);

// "37 done, 2 backfilling, 1 failed, 20 waiting": counts by label, in the order of the phases.
std::string RolloutSummary(const std::vector<RolloutMember>& members);

}  // namespace tide
