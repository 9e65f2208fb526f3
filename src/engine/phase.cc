#include "engine/phase.h"

#include <string>
#include <vector>

namespace tide {

const char* ToString(PlanState s) {
  switch (s) {
    case PlanState::kAccepted: return "accepted";
    case PlanState::kExpanding: return "expanding";
    case PlanState::kBackfilling: return "backfilling";
    case PlanState::kGating: return "gating";
    case PlanState::kContracting: return "contracting";
    case PlanState::kDone: return "done";
    case PlanState::kFailed: return "failed";
    case PlanState::kAborting: return "aborting";
    case PlanState::kAborted: return "aborted";
    case PlanState::kReverting: return "reverting";
    case PlanState::kReverted: return "reverted";
  }
  return "unknown";
}

const std::vector<PlanState>& AllPlanStates() {
  static const std::vector<PlanState> all = {
      PlanState::kAccepted, PlanState::kExpanding,   PlanState::kBackfilling, PlanState::kGating,
      PlanState::kContracting, PlanState::kDone, PlanState::kFailed, PlanState::kAborting,
      PlanState::kAborted, PlanState::kReverting, PlanState::kReverted};
  return all;
}

std::optional<PlanState> PlanStateFromString(const std::string& s) {
  for (PlanState st : AllPlanStates()) {
    if (s == ToString(st)) return st;
  }
  return std::nullopt;
}

bool IsFinished(PlanState s) {
  return s == PlanState::kDone || s == PlanState::kAborted || s == PlanState::kReverted;
}

bool IsFinal(PlanState s) {
  return s == PlanState::kDone || s == PlanState::kFailed || s == PlanState::kAborted ||
         s == PlanState::kReverted;
}

std::string AbortRefusal(PlanState state, PlanState failed_in) {
  const PlanState at = state == PlanState::kFailed ? failed_in : state;
  switch (at) {
    case PlanState::kAccepted:
    case PlanState::kExpanding:
    case PlanState::kBackfilling:
    case PlanState::kGating:
      return "";
    case PlanState::kContracting:
      return std::string("contract has started") +
             (state == PlanState::kFailed ? " (the plan failed in it)" : "") +
             ": its constraints and drops are not undone by rollback; finish the plan (fix the "
             "cause and `tidectl retry`), or write a new plan that reverses it";
    case PlanState::kDone:
      return "the plan is done; `tidectl revert` switches its alter_column and rename steps back "
             "until they are finalized, else write a new plan that reverses it";
    case PlanState::kAborting: return "the plan is already aborting";
    case PlanState::kAborted: return "the plan was already aborted";
    case PlanState::kReverting:
    case PlanState::kReverted: return "the plan is being or was reverted";
    case PlanState::kFailed: break;
  }
  return "the plan's state is unknown";
}

std::string RevertRefusal(const Plan& plan, PlanState state, PlanState failed_in, bool kept) {
  if (plan.revert.empty()) {
    return "the plan has nothing to switch back: revert undoes the switch of alter_column, "
           "rename_column and rename_table steps";
  }
  const PlanState at = state == PlanState::kFailed ? failed_in : state;
  if (at == PlanState::kReverting) return "";
  if (at == PlanState::kReverted) return "the plan was already reverted";
  if (at != PlanState::kDone) {
    return std::string("the plan is ") + ToString(state) +
           ": revert switches back a done plan; before contract, `tidectl abort` undoes it";
  }
  if (!kept) return "the old columns were dropped (finalized, or the retention passed)";
  return "";
}

std::string FinalizeRefusal(PlanState state, PlanState failed_in, bool kept) {
  if (!kept) {
    return "the plan keeps no old columns (already finalized or reverted, or it has not "
           "switched yet)";
  }
  const bool failed_revert = state == PlanState::kFailed && failed_in == PlanState::kReverting;
  if (state != PlanState::kDone && !failed_revert) {
    return std::string("the plan is ") + ToString(state) + "; finalize drops the old columns of a done plan";
  }
  return "";
}

const char* PhaseOf(PlanState s) {
  switch (s) {
    case PlanState::kExpanding: return "expand";
    case PlanState::kBackfilling: return "backfill";
    case PlanState::kGating: return "gate";
    case PlanState::kContracting: return "contract";
    case PlanState::kAborting: return "rollback";
    case PlanState::kReverting: return "revert";
    default: return "";
  }
}

bool PauseCovers(const std::string& pause_plan, const std::string& pause_phase,
                 const std::string& plan, const std::string& phase,
                 const std::string& database) {
  const bool covers_plan = pause_plan == "*" || pause_plan == plan ||
                           (!database.empty() && pause_plan == PauseTarget(plan, database));
  return covers_plan && (pause_phase.empty() || pause_phase == phase);
}

std::string PauseTarget(const std::string& plan, const std::string& database) {
  return database.empty() ? plan : plan + "@" + database;
}

PlanCursor Normalize(const Plan& plan, PlanCursor c) {
  for (;;) {
    switch (c.state) {
      case PlanState::kAccepted:
        c = {PlanState::kExpanding, 0, c.catch_up};
        continue;
      case PlanState::kExpanding:
        if (c.step < static_cast<int>(plan.expand.size())) return c;
        c = {PlanState::kBackfilling, 0, c.catch_up};
        continue;
      case PlanState::kBackfilling:
        if (c.step < static_cast<int>(plan.backfill.size())) return c;
        c = {PlanState::kGating, 0, c.catch_up};
        continue;
      case PlanState::kGating:
        if (!plan.gates.empty()) return c;
        c = {PlanState::kContracting, 0, c.catch_up};
        continue;
      case PlanState::kContracting:
        return c;  // kFinish when every step is done
      case PlanState::kReverting:
      case PlanState::kReverted:
      case PlanState::kAborting:  // kFinishAborted when every rollback step is done
      case PlanState::kDone:
      case PlanState::kFailed:
      case PlanState::kAborted:
        return c;
    }
  }
}

Action NextAction(const Plan& plan, const PlanCursor& c) {
  const size_t i = static_cast<size_t>(c.step);
  switch (c.state) {
    case PlanState::kExpanding: return {Action::Kind::kRunExpandStep, i};
    case PlanState::kBackfilling: return {Action::Kind::kRunBackfillTask, i};
    case PlanState::kGating: return {Action::Kind::kCheckGates, 0};
    case PlanState::kContracting:
      if (i < plan.contract.size()) return {Action::Kind::kRunContractStep, i};
      return {Action::Kind::kFinish, 0};
    case PlanState::kAborting:
      if (i < plan.rollback.size()) return {Action::Kind::kRunRollbackStep, i};
      return {Action::Kind::kFinishAborted, 0};
    case PlanState::kReverting:
      if (i < plan.revert.size()) return {Action::Kind::kRunRevertStep, i};
      return {Action::Kind::kFinishReverted, 0};
    default: return {Action::Kind::kNothing, 0};
  }
}

PlanCursor AfterSuccess(const Plan& plan, const PlanCursor& c) {
  PlanCursor next = c;
  switch (c.state) {
    case PlanState::kExpanding:
    case PlanState::kBackfilling:
      next.step++;
      break;
    case PlanState::kGating:
      next = {PlanState::kContracting, 0, c.catch_up};
      break;
    case PlanState::kContracting:
      if (c.step < static_cast<int>(plan.contract.size())) next.step++;
      else next = {PlanState::kDone, 0, c.catch_up};
      break;
    case PlanState::kAborting:
      if (c.step < static_cast<int>(plan.rollback.size())) next.step++;
      else next = {PlanState::kAborted, c.step, c.catch_up};
      break;
    case PlanState::kReverting:
      if (c.step < static_cast<int>(plan.revert.size())) next.step++;
      else next = {PlanState::kReverted, c.step, c.catch_up};
      break;
    default:
      break;
  }
  return Normalize(plan, next);
}

PlanCursor AfterGateFailure(const PlanCursor& c) {
  if (c.catch_up) return c;
  return {PlanState::kBackfilling, 0, true};
}

}  // namespace tide
