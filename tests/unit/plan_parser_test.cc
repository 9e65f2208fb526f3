#include "plan/plan_parser.h"
#include "plan/lint.h"

#include <dirent.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace tide {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> FilesIn(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(dir + "/" + n);
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

const char* kClinicPlan = R"(plan: add_clinic_id_to_patient_offers
database: app
description: every patient offer belongs to a clinic
settings:
  lock_timeout: 2s
  statement_timeout: 30s
expand:
  - sql: ALTER TABLE patient_offers ADD COLUMN "clinicId" text
backfill:
  - table: patient_offers
    key: id
    set:
      clinicId: (SELECT o."clinicId" FROM offers o WHERE o.id = patient_offers."offerId")
    where: '"clinicId" IS NULL'
    batch_size: 1000
gates:
  - null_count: {table: patient_offers, column: clinicId}
  - sql: SELECT count(*) FROM patient_offers po JOIN offers o ON o.id = po."offerId" WHERE po."clinicId" <> o."clinicId"
    expect: 0
contract:
  - sql: ALTER TABLE patient_offers ALTER COLUMN "clinicId" SET NOT NULL
)";

TEST(PlanParser, ReadsEveryFieldOfTheIssueExample) {
  auto r = ParsePlan(kClinicPlan, "p.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  const Plan& p = r.plan;
  EXPECT_EQ(p.name, "add_clinic_id_to_patient_offers");
  EXPECT_EQ(p.database, "app");
  EXPECT_EQ(p.settings.lock_timeout, Millis(2000));
  EXPECT_EQ(p.settings.statement_timeout, Millis(30000));
  ASSERT_EQ(p.expand.size(), 1u);
  EXPECT_EQ(p.expand[0].pos.line, 8);
  ASSERT_EQ(p.backfill.size(), 1u);
  const BackfillTask& t = p.backfill[0];
  EXPECT_EQ(t.table.name, "patient_offers");
  EXPECT_EQ(t.table.schema, "");
  EXPECT_EQ(t.key, std::vector<std::string>{"id"});
  ASSERT_EQ(t.set.size(), 1u);
  EXPECT_EQ(t.set[0].first, "clinicId");  // case kept exactly
  EXPECT_EQ(t.where, "\"clinicId\" IS NULL");
  EXPECT_EQ(t.batch_size, 1000);
  ASSERT_EQ(p.gates.size(), 2u);
  EXPECT_EQ(p.gates[0].kind, Gate::Kind::kNullCount);
  EXPECT_EQ(p.gates[0].column, "clinicId");
  EXPECT_EQ(p.gates[1].kind, Gate::Kind::kSql);
  EXPECT_EQ(p.gates[1].expect, 0);
  ASSERT_EQ(p.contract.size(), 1u);
}

TEST(PlanParser, SplitsSchemaQualifiedTablesOnTheDot) {
  auto r = ParsePlan("plan: p\ndatabase: app\nbackfill:\n  - table: core.users\n    key: [tenant_id, id]\n"
                     "    set: {display_name: name}\n",
                     "p.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.plan.backfill[0].table.schema, "core");
  EXPECT_EQ(r.plan.backfill[0].table.name, "users");
  EXPECT_EQ(r.plan.backfill[0].key, (std::vector<std::string>{"tenant_id", "id"}));
}

TEST(PlanParser, EveryPhaseIsOptional) {
  auto r = ParsePlan("plan: only_expand\ndatabase: app\nexpand:\n  - sql: SELECT 1\n", "p.yaml");
  EXPECT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
}

TEST(PlanParser, ReportsEveryProblemInOnePass) {
  auto r = ParsePlan("plan: Bad!\ndatabase: app\nsettings:\n  lock_timeout: 5\nbackfil: []\n", "p.yaml");
  EXPECT_EQ(r.errors.size(), 3u) << FormatDiagnostics(r.errors);
}

TEST(PlanParser, RejectsPlansLargerThanOneMebibyte) {
  std::string text = "plan: p\ndatabase: app\ndescription: \"" + std::string(kMaxPlanBytes, 'x') + "\"\n";
  auto r = ParsePlan(text, "big.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("more than the 1048576 allowed"), std::string::npos);
}

TEST(PlanParser, DiagnosticsNameFileLineColumnAndFix) {
  auto r = ParsePlan("plan: p\ndatabase: app\nbackfil: []\n", "plans/x.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].ToString(),
            "plans/x.yaml:3:1: unknown key `backfil` in the plan; did you mean `backfill`? Allowed "
            "keys: plan, database, description, settings, expand, backfill, gates, contract, rollback, "
            "rollout");
}

TEST(PlanParser, DatabaseMustBeInTheConfig) {
  auto r = ParsePlan("plan: p\ndatabase: billing\n", "p.yaml");
  ASSERT_TRUE(r.ok());
  auto errors = CheckPlanAgainstDatabases(r.plan, "p.yaml", {"app", "crm"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].ToString(),
            "p.yaml:2:11: database `billing` is not in the daemon's config; use one of: app, crm");
  EXPECT_TRUE(CheckPlanAgainstDatabases(r.plan, "p.yaml", {"billing"}).empty());
}

TEST(PlanParser, APlanOnADatabaseGroupTakesARollout) {
  auto r = ParsePlan(
      "plan: p\ndatabase: shards\nrollout:\n  canary: 2\n  max_parallel: 4\n"
      "  on_failure: continue\n  contract: together\n",
      "p.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.plan.rollout.canary, 2);
  EXPECT_EQ(r.plan.rollout.max_parallel, 4);
  EXPECT_EQ(r.plan.rollout.on_failure, Rollout::OnFailure::kContinue);
  EXPECT_EQ(r.plan.rollout.contract, Rollout::Contract::kTogether);
  EXPECT_TRUE(CheckPlanAgainstDatabases(r.plan, "p.yaml", {"a", "b"}, {"shards"}).empty());
  auto defaults = ParsePlan("plan: p\ndatabase: shards\n", "p.yaml");
  EXPECT_EQ(defaults.plan.rollout.canary, 1);
  EXPECT_EQ(defaults.plan.rollout.max_parallel, 1);
  EXPECT_EQ(defaults.plan.rollout.on_failure, Rollout::OnFailure::kHalt);
  EXPECT_EQ(defaults.plan.rollout.contract, Rollout::Contract::kEach);

  auto bad = ParsePlan("plan: p\ndatabase: shards\nrollout:\n  on_failure: stop\n  contract: all\n"
                       "  max_parallel: 0\n", "p.yaml");
  ASSERT_EQ(bad.errors.size(), 3u) << FormatDiagnostics(bad.errors);
  EXPECT_NE(FormatDiagnostics(bad.errors).find("p.yaml:4:15: `on_failure` in `rollout` is `stop`"),
            std::string::npos) << FormatDiagnostics(bad.errors);
  // A rollout on one database says what to do.
  auto one = ParsePlan("plan: p\ndatabase: a\nrollout: {canary: 1}\n", "p.yaml");
  ASSERT_TRUE(one.ok());
  auto errors = CheckPlanAgainstDatabases(one.plan, "p.yaml", {"a"}, {"shards"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].ToString().find("`rollout` is for a plan on a database group"), std::string::npos);
}

TEST(PlanParser, EveryExamplePlanIsValid) {
  auto files = FilesIn(std::string(TIDE_SOURCE_DIR) + "/plans", ".yaml");
  ASSERT_GE(files.size(), 3u);
  const auto fleet = FilesIn(std::string(TIDE_SOURCE_DIR) + "/plans/fleet", ".yaml");
  ASSERT_GE(fleet.size(), 1u);
  files.insert(files.end(), fleet.begin(), fleet.end());
  for (const auto& f : files) {
    auto r = ParsePlan(Slurp(f), f);
    EXPECT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
    EXPECT_TRUE(CheckPlanAgainstDatabases(r.plan, f, {"app"}, {"shards"}).empty()) << f;
    for (const auto& finding : LintPlan(r.plan)) ADD_FAILURE() << finding.ToString(f);
  }
}

// tests/data/bad_plans/NAME.yaml holds a bad plan; NAME.expect its first error:
// "LINE:COLUMN text" (or "- text" when the error has no position).
TEST(PlanParser, EveryBadPlanGivesItsExpectedError) {
  auto files = FilesIn(std::string(TIDE_SOURCE_DIR) + "/tests/data/bad_plans", ".yaml");
  ASSERT_GE(files.size(), 40u);
  for (const auto& f : files) {
    std::string expect = Slurp(f.substr(0, f.size() - 5) + ".expect");
    while (!expect.empty() && expect.back() == '\n') expect.pop_back();
    ASSERT_FALSE(expect.empty()) << "no .expect for " << f;
    const std::string where = expect.substr(0, expect.find(' '));
    const std::string text = expect.substr(expect.find(' ') + 1);
    auto r = ParsePlan(Slurp(f), f);
    ASSERT_FALSE(r.ok()) << f << " was accepted";
    const Diagnostic& d = r.errors[0];
    if (where != "-") {
      EXPECT_EQ(std::to_string(d.pos.line) + ":" + std::to_string(d.pos.column), where)
          << f << ": " << d.ToString();
    }
    EXPECT_NE(d.ToString().find(text), std::string::npos) << f << ": " << d.ToString();
    EXPECT_EQ(d.ToString().rfind(f, 0), 0u) << "the message must start with the file name";
  }
}

// The first diagnostic of a plan, "file:line:column: message", or "accepted".
std::string FirstError(const std::string& text) {
  auto r = ParsePlan(text, "p.yaml");
  return r.errors.empty() ? "accepted" : r.errors[0].ToString();
}

// A plan whose `settings:` holds the one line `setting` (at line 4, column 3).
std::string SettingsError(const std::string& setting) {
  return FirstError("plan: p\ndatabase: app\nsettings:\n  " + setting + "\n");
}

// A plan whose one expand step has `statement_timeout: <value>` (at line 5, column 24).
std::string StepTimeoutError(const std::string& value) {
  return FirstError("plan: p\ndatabase: app\nexpand:\n"
                    "  - sql: CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (c)\n"
                    "    statement_timeout: " + value + "\n");
}

// A plan whose one backfill task has the line `setting` (at line 6, column 5).
std::string TaskError(const std::string& setting) {
  return FirstError("plan: p\ndatabase: app\nbackfill:\n  - table: t\n    set: {c: \"1\"}\n    " +
                    setting + "\n");
}

const char* kNoLockTimeout =
    " (0 would mean no timeout: a DDL statement could wait for ever and every query would queue "
    "behind it)";
const char* kNoStatementTimeout =
    " (0 would mean no timeout: a statement could run for ever and hold its locks all that time)";
const char* kNoGateTimeout =
    " (0 would mean no timeout: a gate query or sweep could scan the table for ever)";

TEST(PlanParser, RefusesALockTimeoutOfZeroBecausePostgresWouldWaitForEver) {
  EXPECT_EQ(SettingsError("lock_timeout: 0s"),
            std::string("p.yaml:4:17: `lock_timeout` in `settings` must be between 10ms and 10m, "
                        "not 0s") + kNoLockTimeout);
  EXPECT_EQ(SettingsError("lock_timeout: 0ms"),
            std::string("p.yaml:4:17: `lock_timeout` in `settings` must be between 10ms and 10m, "
                        "not 0ms") + kNoLockTimeout);
}

TEST(PlanParser, RefusesALockTimeoutBelowTenMillisecondsOrAboveTenMinutes) {
  EXPECT_EQ(SettingsError("lock_timeout: 9ms"),
            "p.yaml:4:17: `lock_timeout` in `settings` must be between 10ms and 10m, not 9ms");
  EXPECT_EQ(SettingsError("lock_timeout: 601s"),
            "p.yaml:4:17: `lock_timeout` in `settings` must be between 10ms and 10m, not 601s");
  EXPECT_EQ(SettingsError("lock_timeout: 24h"),
            "p.yaml:4:17: `lock_timeout` in `settings` must be between 10ms and 10m, not 24h");
}

TEST(PlanParser, AcceptsALockTimeoutAtEitherEndOfItsRange) {
  EXPECT_EQ(SettingsError("lock_timeout: 10ms"), "accepted");
  EXPECT_EQ(SettingsError("lock_timeout: 10m"), "accepted");
}

TEST(PlanParser, RefusesAStatementTimeoutOfZeroBelowOneHundredMillisecondsOrAboveADay) {
  EXPECT_EQ(SettingsError("statement_timeout: 0s"),
            std::string("p.yaml:4:22: `statement_timeout` in `settings` must be between 100ms and "
                        "24h, not 0s") + kNoStatementTimeout);
  EXPECT_EQ(SettingsError("statement_timeout: 99ms"),
            "p.yaml:4:22: `statement_timeout` in `settings` must be between 100ms and 24h, not "
            "99ms");
  EXPECT_EQ(SettingsError("statement_timeout: 25h"),
            "p.yaml:4:22: `statement_timeout` in `settings` must be between 100ms and 24h, not "
            "25h");
  EXPECT_EQ(SettingsError("statement_timeout: 100ms"), "accepted");
  EXPECT_EQ(SettingsError("statement_timeout: 24h"), "accepted");
}

TEST(PlanParser, RefusesAStepStatementTimeoutOfZeroBelowOneHundredMillisecondsOrAboveADay) {
  EXPECT_EQ(StepTimeoutError("0s"),
            std::string("p.yaml:5:24: `statement_timeout` in expand step 1 must be between 100ms "
                        "and 24h, not 0s") + kNoStatementTimeout);
  EXPECT_EQ(StepTimeoutError("50ms"),
            "p.yaml:5:24: `statement_timeout` in expand step 1 must be between 100ms and 24h, not "
            "50ms");
  EXPECT_EQ(StepTimeoutError("1441m"),
            "p.yaml:5:24: `statement_timeout` in expand step 1 must be between 100ms and 24h, not "
            "1441m");
  EXPECT_EQ(StepTimeoutError("6h"), "accepted");
}

TEST(PlanParser, ReadsTheGateTimeoutAndLeavesItToTheDaemonWhenLeftOut) {
  auto r = ParsePlan("plan: p\ndatabase: app\nsettings:\n  gate_timeout: 2h\n", "p.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.plan.settings.gate_timeout, Millis(std::chrono::hours(2)));
  EXPECT_FALSE(ParsePlan(kClinicPlan, "p.yaml").plan.settings.gate_timeout.has_value());
}

TEST(PlanParser, RefusesAGateTimeoutOfZeroBelowOneSecondOrAboveADay) {
  EXPECT_EQ(SettingsError("gate_timeout: 0s"),
            std::string("p.yaml:4:17: `gate_timeout` in `settings` must be between 1s and 24h, "
                        "not 0s") + kNoGateTimeout);
  EXPECT_EQ(SettingsError("gate_timeout: 999ms"),
            "p.yaml:4:17: `gate_timeout` in `settings` must be between 1s and 24h, not 999ms");
  EXPECT_EQ(SettingsError("gate_timeout: 48h"),
            "p.yaml:4:17: `gate_timeout` in `settings` must be between 1s and 24h, not 48h");
  EXPECT_EQ(SettingsError("gate_timeout: 1s"), "accepted");
  EXPECT_EQ(SettingsError("gate_timeout: 24h"), "accepted");
}

TEST(PlanParser, RefusesATargetBatchTimeOfZeroBelowTenMillisecondsOrAboveTenMinutes) {
  EXPECT_EQ(TaskError("target_batch_time: 0ms"),
            "p.yaml:6:24: `target_batch_time` in backfill task 1 must be between 10ms and 10m, not "
            "0ms (0 would halve every batch down to `min_batch_size`)");
  EXPECT_EQ(TaskError("target_batch_time: 5ms"),
            "p.yaml:6:24: `target_batch_time` in backfill task 1 must be between 10ms and 10m, not "
            "5ms");
  EXPECT_EQ(TaskError("target_batch_time: 11m"),
            "p.yaml:6:24: `target_batch_time` in backfill task 1 must be between 10ms and 10m, not "
            "11m");
}

TEST(PlanParser, KeepsZeroWhereItTurnsASettingOff) {
  EXPECT_EQ(SettingsError("max_replication_lag: 0s"), "accepted");
  EXPECT_EQ(TaskError("pause_between_batches: 0ms"), "accepted");
  EXPECT_EQ(TaskError("pause_between_batches: 11m"),
            "p.yaml:6:28: `pause_between_batches` in backfill task 1 must be at most 10m, not 11m");
  EXPECT_EQ(SettingsError("max_replication_lag: 25h"),
            "p.yaml:4:24: `max_replication_lag` in `settings` must be at most 24h, not 25h");
}

TEST(PlanParser, BatchByIsPagesOrKey) {
  EXPECT_EQ(TaskError("batch_by: pages"), "accepted");
  EXPECT_EQ(TaskError("batch_by: key"), "accepted");
  EXPECT_EQ(TaskError("batch_by: ctid"),
            "p.yaml:6:15: `batch_by` in backfill task 1 is `ctid`; write `pages` (the table "
            "in its physical order) or `key` (in the key's order)");
  EXPECT_NE(TaskError("where: \"c <> 1\"\n    batch_by: pages")
                .find("`batch_by: pages` in backfill task 1 cannot be used with `where`"),
            std::string::npos);
}

TEST(PlanParser, IdentifiersAreCheckedButKeptAsWritten) {
  std::string error;
  EXPECT_TRUE(CheckIdentifier("clinicId", &error));
  EXPECT_TRUE(CheckIdentifier("Ünïcode name", &error));
  EXPECT_FALSE(CheckIdentifier("", &error));
  EXPECT_FALSE(CheckIdentifier(std::string(64, 'a'), &error));
  EXPECT_FALSE(CheckIdentifier(std::string("a\0b", 3), &error));
  EXPECT_FALSE(CheckIdentifier("a;b", &error));
}

TEST(PlanParser, PlanNamesAreLowerCaseDigitsAndUnderscores) {
  EXPECT_TRUE(IsValidPlanName("add_clinic_id_2"));
  EXPECT_FALSE(IsValidPlanName(""));
  EXPECT_FALSE(IsValidPlanName("Add"));
  EXPECT_FALSE(IsValidPlanName("a-b"));
  EXPECT_FALSE(IsValidPlanName("../x"));
  EXPECT_FALSE(IsValidPlanName(std::string(64, 'a')));
}

// Expressions and types of typed operations and backfill tasks are read by PostgreSQL's
// parser when the plan is: a typo is refused at validate, not when the step runs.
TEST(PlanParser, ExpressionsAndTypesArePostgreSQLs) {
  auto errors = [](const std::string& body) {
    return FormatDiagnostics(ParsePlan("plan: p\ndatabase: app\n" + body, "p.yaml").errors);
  };
  EXPECT_NE(errors("expand:\n  - add_column: {table: t, column: c, type: int, default: \"1 +\"}\n")
                .find("`default` in `add_column` in expand step 1 is not SQL PostgreSQL can read: syntax error"),
            std::string::npos);
  EXPECT_NE(errors("expand:\n  - add_column: {table: t, column: c, type: \"numeric(10,\"}\n")
                .find("is not a type PostgreSQL can read"),
            std::string::npos);
  EXPECT_NE(errors("expand:\n  - add_column: {table: t, column: c, type: text COLLATE \"C\"}\n").find("holds `COLLATE`"),
            std::string::npos);
  EXPECT_NE(errors("backfill:\n  - table: t\n    set: {c: \"1); DROP TABLE t; SELECT (1\"}\n")
                .find("holds more than one expression"),
            std::string::npos);
  EXPECT_NE(errors("backfill:\n  - table: t\n    set: {c: \"upper(a\"}\n").find("is not SQL PostgreSQL can read"),
            std::string::npos);
  EXPECT_EQ(errors("expand:\n  - add_column: {table: t, column: c, type: \"timestamp(3) with time zone[]\", "
                   "default: \"'{}' -- empty\"}\n"),
            "");
  EXPECT_EQ(errors("backfill:\n  - table: t\n    set: {c: \"(SELECT o.x FROM o WHERE o.id = t.o_id)\"}\n"
                   "    where: \"c IS NULL AND a > 0\"\n"),
            "");
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {

const char* kHealthPlan = "plan: p\ndatabase: app\nsettings:\n%s\nexpand:\n  - sql: SELECT 1\n";

std::string PlanWithSettings(const std::string& lines) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, kHealthPlan, lines.c_str());
  return buf;
}

TEST(PlanParser, ReadsTheHealthSignalSettings) {
  auto r = ParsePlan(PlanWithSettings("  hold_on_autovacuum: false\n  max_archive_backlog: 32\n"
                                      "  max_slot_retained_wal: 1GB\n  max_xmin_age: 10m\n"
                                      "  slow_on_forced_checkpoints: false\n  throttle_hold: 30s"),
                     "p.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  const HealthSettings& h = r.plan.settings.health;
  EXPECT_EQ(h.hold_on_autovacuum, false);
  EXPECT_EQ(h.max_archive_backlog, 32);
  EXPECT_EQ(h.max_slot_retained_wal, int64_t{1} << 30);
  EXPECT_EQ(h.max_xmin_age, Millis(600000));
  EXPECT_EQ(h.slow_on_forced_checkpoints, false);
  EXPECT_EQ(h.throttle_hold, Millis(30000));
}

TEST(PlanParser, BadHealthSignalSettingsSayWhereAndWhatIsAccepted) {
  auto Errors = [](const std::string& lines) {
    return FormatDiagnostics(ParsePlan(PlanWithSettings(lines), "p.yaml").errors);
  };
  EXPECT_NE(Errors("  max_slot_retained_wal: 1XB").find("p.yaml:4:"), std::string::npos);
  EXPECT_NE(Errors("  max_slot_retained_wal: 1XB").find("512kB, 64MB, 1GB or 2TB"), std::string::npos);
  EXPECT_NE(Errors("  max_slot_retained_wal: lots").find("is not a size"), std::string::npos);
  EXPECT_NE(Errors("  hold_on_autovacuum: maybe").find("must be true or false, not `maybe`"),
            std::string::npos);
  EXPECT_NE(Errors("  max_xmin_age: 10").find("has no unit"), std::string::npos);
  EXPECT_NE(Errors("  throttle_hold: 2h").find("at most 1h"), std::string::npos);
  EXPECT_NE(Errors("  max_archive_backlog: -1").find("not a whole number"), std::string::npos);
  EXPECT_NE(Errors("  hold_on_autovacum: true").find("unknown key `hold_on_autovacum`"),
            std::string::npos);
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {

TEST(PlanParser, ReadsTheBlockerPolicyAndRefusesOneThatEndsNothing) {
  auto r = ParsePlan("plan: p\ndatabase: app\nsettings:\n  blockers:\n    after_lock_timeouts: 3\n"
                     "    terminate_idle_in_transaction: 10s\n    cancel_queries_older_than: 5m\n"
                     "    never: [replicator, batch]\n    max_per_plan: 5\n  vacuum_between_batches: false\n",
                     "p.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  ASSERT_TRUE(r.plan.settings.health.blockers.has_value());
  const BlockerSettings& b = *r.plan.settings.health.blockers;
  EXPECT_EQ(*b.after_lock_timeouts, 3);
  EXPECT_EQ(b.terminate_idle_in_transaction->count(), 10000);
  EXPECT_EQ(b.cancel_queries_older_than->count(), 300000);
  EXPECT_EQ(b.never, (std::vector<std::string>{"replicator", "batch"}));
  EXPECT_EQ(*b.max_per_plan, 5);
  EXPECT_EQ(r.plan.settings.health.vacuum_between_batches, std::optional<bool>(false));

  auto nothing = ParsePlan("plan: p\ndatabase: app\nsettings:\n  blockers:\n    max_per_plan: 5\n", "p.yaml");
  ASSERT_EQ(nothing.errors.size(), 1u) << FormatDiagnostics(nothing.errors);
  EXPECT_NE(nothing.errors[0].message.find("ends no session"), std::string::npos);
  auto typo = ParsePlan("plan: p\ndatabase: app\nsettings:\n  blockers:\n    terminate_idle: 10s\n", "p.yaml");
  EXPECT_FALSE(typo.ok());
  auto never = ParsePlan("plan: p\ndatabase: app\nsettings:\n  blockers:\n    terminate_idle_in_transaction: 1s\n"
                         "    never: replicator\n", "p.yaml");
  ASSERT_EQ(never.errors.size(), 1u) << FormatDiagnostics(never.errors);
  EXPECT_NE(never.errors[0].message.find("not a list of roles"), std::string::npos);
}

TEST(PlanParser, VerifyIsATaskKeyAndRefusedWithWhere) {
  auto r = ParsePlan("plan: p\ndatabase: app\nbackfill:\n  - table: t\n    set: {c: \"1\"}\n    verify: true\n",
                     "p.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_TRUE(r.plan.backfill[0].verify);
  auto with_where = ParsePlan("plan: p\ndatabase: app\nbackfill:\n  - table: t\n    set: {c: \"1\"}\n"
                              "    where: c <> 1\n    verify: true\n", "p.yaml");
  ASSERT_EQ(with_where.errors.size(), 1u) << FormatDiagnostics(with_where.errors);
  EXPECT_NE(with_where.errors[0].message.find("`where` fills only the rows it matches"), std::string::npos);
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {
TEST(PlanParser, VerifyIsRefusedForAnExpressionThatChangesFromOneStatementToTheNext) {
  for (const char* expr : {"now()", "CURRENT_TIMESTAMP", "gen_random_uuid()", "nextval('s')",
                           "a + (random() * 10)::int"}) {
    auto r = ParsePlan(std::string("plan: p\ndatabase: app\nbackfill:\n  - table: t\n    set: {c: \"") + expr +
                           "\"}\n    verify: true\n", "p.yaml");
    ASSERT_EQ(r.errors.size(), 1u) << expr << "\n" << FormatDiagnostics(r.errors);
    EXPECT_NE(r.errors[0].message.find("no row would agree"), std::string::npos) << r.errors[0].message;
  }
  auto fine = ParsePlan("plan: p\ndatabase: app\nbackfill:\n  - table: t\n    set: {c: \"md5(a::text) || "
                        "(SELECT o.x FROM o WHERE o.id = t.oid)\"}\n    verify: true\n", "p.yaml");
  EXPECT_TRUE(fine.ok()) << FormatDiagnostics(fine.errors);
}
}  // namespace
}  // namespace tide
