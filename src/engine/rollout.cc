#include "engine/rollout.h"

#include <algorithm>
#include <map>

namespace tide {

namespace {

bool Failed(const RolloutMember& m) {
  return m.state == PlanState::kFailed || m.state == PlanState::kAborting ||
         m.state == PlanState::kAborted || m.state == PlanState::kReverting ||
         m.state == PlanState::kReverted;
}

bool Waiting(const RolloutMember& m) { return m.state == PlanState::kAccepted && !m.started; }

// Started and still working (a parked database only waits: it holds no session).
bool InFlight(const RolloutMember& m) {
  return m.started && !IsFinal(m.state) && !m.parked && m.state != PlanState::kAborting;
}

bool PastGates(const RolloutMember& m) {
  if (Failed(m)) return false;  // an abort of a ready database: its gates count no more
  return m.ready || m.state == PlanState::kContracting || m.state == PlanState::kDone;
}

}  // namespace

bool ReadyForContract(PlanState state, const std::string& waiting_reason) {
  return state == PlanState::kGating && waiting_reason.rfind(kReadyForContract, 0) == 0;
}

int64_t SessionsOf(const Plan& plan, int64_t default_workers) {
  int64_t widest = 0;
  for (const auto& t : plan.backfill) widest = std::max(widest, t.workers.value_or(default_workers));
  return 4 + widest;
}

RolloutDecision DecideRollout(const Rollout& rollout, const std::vector<RolloutMember>& members,
                              int64_t server_budget, bool released) {
  RolloutDecision d;
  const bool together = rollout.contract == Rollout::Contract::kTogether;
  std::vector<const RolloutMember*> part;
  bool all_known = true;
  for (const auto& m : members) {
    if (!m.known) all_known = false;
    else if (m.recorded) part.push_back(&m);
  }
  int64_t in_flight = 0;
  std::map<std::string, int64_t> server_sessions;  // of the databases in flight
  bool failed = false, all_final = all_known, all_done = all_known;
  for (const auto* m : part) {
    in_flight += InFlight(*m) && !m->elsewhere;
    if (InFlight(*m)) server_sessions[m->server] += m->sessions;
    failed |= Failed(*m);
    all_final &= IsFinal(m->state) && m->state != PlanState::kFailed;
    all_done &= m->state == PlanState::kDone;
    if (together && !PastGates(*m)) d.contract_allowed = false;
  }
  // No database contracts before the release: one that did says it happened, as its tide
  // schema tells every tided, after a restart too.
  for (const auto* m : part) {
    released |= m->state == PlanState::kContracting || m->state == PlanState::kDone;
  }
  if (together && released) d.contract_allowed = true;
  if (!all_known && together) d.contract_allowed = false;  // nothing is decided blind
  d.release = together && d.contract_allowed;
  d.over = all_final && !part.empty();
  d.all_done = all_done && !part.empty();
  const size_t canaries = std::min<size_t>(static_cast<size_t>(rollout.canary), part.size());
  bool canary_failed = false;
  for (size_t i = 0; i < canaries; ++i) {
    const RolloutMember& m = *part[i];
    const bool through = m.state == PlanState::kDone || (together && (PastGates(m) || released));
    if (!through) d.canary = true;
    canary_failed |= Failed(m);
  }
  d.halted = canary_failed || (failed && rollout.on_failure == Rollout::OnFailure::kHalt);
  if (!all_known || d.halted) return d;
  int64_t slots = rollout.max_parallel - in_flight;
  const size_t candidates = d.canary ? canaries : part.size();
  for (size_t i = 0; i < candidates && slots > 0; ++i) {
    const RolloutMember& m = *part[i];
    if (!Waiting(m) && !(d.release && m.parked && !IsFinal(m.state))) continue;
    int64_t& used = server_sessions[m.server];
    if (server_budget > 0 && used > 0 && used + m.sessions > server_budget) continue;
    used += m.sessions;
    d.start.push_back(m.database);
    --slots;
  }
  return d;
}

std::string RolloutLabel(const RolloutMember& m) {
  if (!m.known) return "unreachable";
  if (Waiting(m)) return "waiting";
  if (m.ready) return "ready";
  return ToString(m.state);
}

std::string RolloutSummary(const std::vector<RolloutMember>& members) {
  static const std::vector<std::string> order = {
      "done",    "contracting", "ready",   "gating",   "backfilling", "expanding", "accepted",
      "failed",  "aborting",    "aborted", "reverting", "reverted",   "waiting",   "unreachable"};
  std::map<std::string, int> counts;
  for (const auto& m : members) {
    if (m.known && !m.recorded) continue;
    ++counts[RolloutLabel(m)];
  }
  std::string out;
  for (const auto& label : order) {
    auto it = counts.find(label);
    if (it == counts.end()) continue;
    out += (out.empty() ? "" : ", ") + std::to_string(it->second) + " " + label;
  }
  return out.empty() ? "no databases" : out;
}

}  // namespace tide
