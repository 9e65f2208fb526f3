// The plan's state machine: which state follows which, and what to do next. Pure.
//
//   accepted -> expanding -> backfilling -> gating -> contracting -> done
//                   \____________\______________\__________\_______-> failed
//        \____________\______________\___________\-> aborting -> aborted
//
//   done -> reverting -> reverted      (`tidectl revert`, while the switch keeps the old columns)
//
// `tidectl abort` moves a plan that has not reached contract (or failed before it) to aborting,
// which runs the plan's rollback steps; once contract has started, abort is refused.
// A plan's position is a PlanCursor (state, step within the phase, whether the catch-up backfill
// already ran). It is stored in the tide schema after every step, in the same transaction as the
// step when the step is transactional, so a finished step is never run again.
#pragma once

#include <optional>
#include <string>

#include "tide/plan.h"

namespace tide {

enum class PlanState {
  kAccepted,
  kExpanding,
  kBackfilling,
  kGating,
  kContracting,
  kDone,
  kFailed,
  kAborting,
  kAborted,
  kReverting,
  kReverted,
};

const char* ToString(PlanState s);
std::optional<PlanState> PlanStateFromString(const std::string& s);
bool IsFinal(PlanState s);
// Finished for good: done, aborted or reverted (a failed plan can be retried).
bool IsFinished(PlanState s);
// Every state, in order, for metrics that export one series per state.
const std::vector<PlanState>& AllPlanStates();

struct PlanCursor {
  PlanState state = PlanState::kAccepted;
  int step = 0;           // expanding/contracting/aborting: steps done; backfilling: tasks done
  bool catch_up = false;  // the extra backfill pass after a failed gate has started
  bool operator==(const PlanCursor& o) const {
    return state == o.state && step == o.step && catch_up == o.catch_up;
  }
};

struct Action {
  enum class Kind {
    kRunExpandStep,    // index: the step in plan.expand
    kRunBackfillTask,  // index: the task in plan.backfill
    kCheckGates,
    kRunContractStep,  // index: the step in plan.contract
    kFinish,           // mark done
    kRunRollbackStep,  // index: the step in plan.rollback
    kFinishAborted,    // mark aborted
    kRunRevertStep,    // index: the step in plan.revert
    kFinishReverted,   // mark reverted
    kNothing,          // done or failed: nothing left to do
  };
  Kind kind = Kind::kNothing;
  size_t index = 0;
};

// Moves the cursor past phases with nothing left to do (accepted -> expanding, a finished or
// empty phase to the next one). Returns the same cursor when it already points at work.
PlanCursor Normalize(const Plan& plan, PlanCursor c);

// What to do at a normalized cursor.
Action NextAction(const Plan& plan, const PlanCursor& c);

// The cursor after `action` succeeded.
PlanCursor AfterSuccess(const Plan& plan, const PlanCursor& c);

// What to do when a gate check fails: the first time, backfill again over the rows that still
// match (the returned cursor is in backfilling with catch_up set); after that, stay in gating
// and check again later (the returned cursor equals the input).
PlanCursor AfterGateFailure(const PlanCursor& c);

// Why a plan in `state` (which failed in `failed_in`, when failed) cannot be aborted; empty when
// it can: abort is allowed until contract starts.
std::string AbortRefusal(PlanState state, PlanState failed_in);

// Why a plan in `state` (failed in `failed_in`) cannot be reverted; empty when it can: a done
// plan whose switch kept the old columns (`kept`: tide.retained_columns has its rows), or one
// whose revert failed.
std::string RevertRefusal(const Plan& plan, PlanState state, PlanState failed_in, bool kept);

// Why `tidectl finalize` is refused for a plan in `state` (failed in `failed_in`); "" when it
// is not: a done plan whose switch kept old columns (`kept`: recorded in
// tide.retained_columns), or one whose revert failed (finalize then gives the revert up).
std::string FinalizeRefusal(PlanState state, PlanState failed_in, bool kept);

// The phase a state belongs to, for the audit log: "expand", "backfill", "gate", "contract",
// "rollback", "revert", "".
const char* PhaseOf(PlanState s);

// Whether `phase` of `plan` is held by a pause of (pause_plan, pause_phase): "*" matches every
// plan, "" every phase. A pause of one database of a plan on a database group has the plan
// "plan@database" (see PauseTarget); it holds `plan` when `database` is that database.
bool PauseCovers(const std::string& pause_plan, const std::string& pause_phase,
                 const std::string& plan, const std::string& phase,
                 const std::string& database = "");
// What a pause (or resume) of `plan` names: the plan, or "plan@database" for one database.
std::string PauseTarget(const std::string& plan, const std::string& database);

}  // namespace tide
