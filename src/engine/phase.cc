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
  }
  return "unknown";
}

const std::vector<PlanState>& AllPlanStates() {
  static const std::vector<PlanState> all = {
      PlanState::kAccepted, PlanState::kExpanding,   PlanState::kBackfilling, PlanState::kGating,
      PlanState::kContracting, PlanState::kDone, PlanState::kFailed};
  return all;
}

std::optional<PlanState> PlanStateFromString(const std::string& s) {
  for (PlanState st : AllPlanStates()) {
    if (s == ToString(st)) return st;
  }
  return std::nullopt;
}

bool IsFinal(PlanState s) { return s == PlanState::kDone || s == PlanState::kFailed; }

const char* PhaseOf(PlanState s) {
  switch (s) {
    case PlanState::kExpanding: return "expand";
    case PlanState::kBackfilling: return "backfill";
    case PlanState::kGating: return "gate";
    case PlanState::kContracting: return "contract";
    default: return "";
  }
}

bool PauseCovers(const std::string& pause_plan, const std::string& pause_phase,
                 const std::string& plan, const std::string& phase) {
  return (pause_plan == "*" || pause_plan == plan) && (pause_phase.empty() || pause_phase == phase);
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
      case PlanState::kDone:
      case PlanState::kFailed:
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
