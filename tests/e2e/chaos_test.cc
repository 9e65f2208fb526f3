// SIGKILL of tided at random instants across every phase, again and again, then a run to the
// end: every row right and updated exactly once, the schema as the plan says, the audit chain
// whole. TIDE_CHAOS_KILLS sets the number of kills (20 by default; hundreds for a long run),
// TIDE_CHAOS_SEED the random seed (printed, so a failing run can be replayed).
#include <signal.h>

#include <cstdlib>
#include <map>
#include <random>

#include "e2e/daemon_fixture.h"

namespace tide {
namespace {


const char* kChaosPlan = R"(plan: chaos
database: app
expand:
  - sql: SELECT pg_sleep(0.3)
  - add_column: {table: patient_offers, column: clinicId, type: text}
  - create_index: {table: patient_offers, name: po_offer_clinic_idx, columns: [offerId, clinicId]}
backfill:
  - table: patient_offers
    set:
      clinicId: (SELECT o."clinicId" FROM offers o WHERE o.id = patient_offers."offerId")
    workers: 3
    batch_size: 200
    max_batch_size: 400
    pause_between_batches: 10ms
gates:
  - null_count: {table: patient_offers, column: clinicId}
  - sql: SELECT count(*) FROM pg_sleep(1)
    expect: 1
contract:
  - set_not_null: {table: patient_offers, column: clinicId}
  - add_check: {table: patient_offers, name: po_clinic_not_empty, expression: "\"clinicId\" <> ''"}
  - add_foreign_key: {table: patient_offers, columns: [offerId], references: {table: offers, columns: [id]}, name: po_offer_fk}
  - add_unique: {table: patient_offers, name: po_id_clinic_key, columns: [id, clinicId]}
)";

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

TEST_F(DaemonTest, SurvivesSigkillAtRandomInstantsInEveryPhase) {
  const int kills = EnvInt("TIDE_CHAOS_KILLS", 20);
  const unsigned seed = static_cast<unsigned>(EnvInt("TIDE_CHAOS_SEED", static_cast<int>(std::random_device{}() & 0x7fffffff)));
  std::cerr << "chaos: " << kills << " kills, TIDE_CHAOS_SEED=" << seed << "\n";
  std::mt19937 rng(seed);
  PgCluster::Shared().Exec(db_, OffersSchema(60000));
  const std::string plan = WritePlan("chaos.yaml", kChaosPlan);
  // The plan's first step takes 0.3 s and its second gate 1 s, so that every phase has a window.
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, plan}).status, 0);
  KillAcrossPhases("chaos", {{"accepted", 250}, {"expanding", 60}, {"backfilling", 400},
                             {"gating", 800}, {"contracting", 40}},
                   kills, &rng);
  ASSERT_TRUE(WaitFor([&] { return PlanState("chaos") == "done"; }, 180s))
      << "state " << PlanState("chaos") << "\n" << ReadAll(dir_ + "/tided.log");

  // Every row right, and updated exactly once.
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers po JOIN offers o ON o.id = po.\"offerId\" "
                  "WHERE po.\"clinicId\" IS DISTINCT FROM o.\"clinicId\""), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers WHERE updates <> 1"), "0")
      << "a committed batch was redone or a row skipped";
  // The schema as the plan says: no leftovers of an interrupted statement.
  EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'patient_offers'::regclass AND attname = 'clinicId'"), "t");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conrelid = 'patient_offers'::regclass AND NOT convalidated"), "0");
  EXPECT_EQ(Query("SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'patient_offers'::regclass AND conname LIKE 'po_%'"),
            "po_clinic_not_empty,po_id_clinic_key,po_offer_fk");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 'patient_offers_clinicId_not_null'"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_index WHERE indrelid = 'patient_offers'::regclass AND NOT indisvalid"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_index WHERE indrelid = 'patient_offers'::regclass"), "3");
  auto verify = Ctl({"audit", "--verify", "--file", dir_ + "/audit.jsonl"});
  EXPECT_EQ(verify.status, 0) << verify.output;
}

}  // namespace
}  // namespace tide
