// libFuzzer target: any bytes through the plan parser and validator, the lint, the compiler of
// typed operations and the config parser. A crash, hang, leak or sanitizer report is a bug;
// the input that found it goes into tests/fuzz/regressions/ and is replayed on every run.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/operations.h"
#include "engine/preflight.h"
#include "plan/config_parser.h"
#include "plan/lint.h"
#include "plan/plan_parser.h"

namespace {
// An exception the parsers did not expect comes back as a diagnostic so that tided goes on;
// here it is a bug like any crash.
void TrapOnInternalError(const std::vector<tide::Diagnostic>& diags) {
  for (const auto& d : diags) {
    if (d.message.rfind(tide::kInternalError, 0) == 0) {
      fprintf(stderr, "%s\n", d.ToString().c_str());
      __builtin_trap();
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = tide::ParsePlan(text, "fuzz.yaml");
  if (parsed.ok()) {
    for (const auto& f : tide::LintPlan(parsed.plan)) (void)f.ToString("fuzz.yaml");
    for (const auto& s : tide::PlannedStatements(parsed.plan)) (void)s.sql.size();
    for (const auto* steps : {&parsed.plan.expand, &parsed.plan.contract, &parsed.plan.rollback}) {
      for (const auto& step : *steps) (void)tide::LockTakenBy(step.Describe());
    }
  }
  TrapOnInternalError(parsed.errors);
  TrapOnInternalError(tide::ParseConfig(text, "fuzz.yaml").errors);
  return 0;
}
