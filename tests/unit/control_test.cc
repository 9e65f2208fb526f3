// Operators' requests that arrive through <spool>/control/: what is taken and what is refused.
#include "runtime/control.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

TEST(Control, RequestsRoundTrip) {
  for (const ControlRequest& r : {ControlRequest{"pause", "*", "", "", ""},
                                  ControlRequest{"resume", "p", "contract", "", ""},
                                  ControlRequest{"abort", "add_clinic_id", "", "", ""}}) {
    auto back = ParseControlRequest(FormatControlRequest(r));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->action, r.action);
    EXPECT_EQ(back->plan, r.plan);
    EXPECT_EQ(back->phase, r.phase);
  }
}

TEST(Control, BadRequestsAreRefusedWithTheReason) {
  auto refused = [](const std::string& text) {
    auto r = ParseControlRequest(text);
    return r.ok() ? std::string("accepted") : r.status().message();
  };
  EXPECT_EQ(refused("not json"), "not a JSON object");
  EXPECT_EQ(refused(R"({"action":"drop","plan":"p","phase":""})"), "action `drop` is not pause, resume, abort, retry, revert, finalize or set");
  EXPECT_EQ(refused(R"({"action":"pause","plan":"","phase":""})"), "no plan named (\"*\" for every plan)");
  EXPECT_EQ(refused(R"({"action":"pause","plan":"p","phase":"later"})"),
            "phase `later` is not one of expand, backfill, gate, contract");
  EXPECT_EQ(refused(R"({"action":"abort","plan":"*","phase":""})"), "abort names one plan and no phase");
  EXPECT_EQ(refused(R"({"action":"abort","plan":"p","phase":"backfill"})"), "abort names one plan and no phase");
  EXPECT_EQ(refused(R"({"action":"set","plan":"*","phase":"","settings":"workers=2"})"),
            "set names one plan and no phase");
  EXPECT_NE(refused(R"({"action":"set","plan":"p","phase":"","settings":"workers=zero"})").find("workers=zero"),
            std::string::npos);
  EXPECT_EQ(refused(R"({"action":"set","plan":"p","phase":""})").find("no setting given"), 0u);
  EXPECT_EQ(refused(R"({"action":"pause","plan":"p","phase":"","settings":"workers=2"})"),
            "only set carries settings");
  EXPECT_EQ(refused(R"({"action":"retry","plan":"*","phase":""})"), "retry names one plan and no phase");
  EXPECT_EQ(refused(R"({"action":"set","plan":"p","database":"shard_01","settings":"workers=2"})"),
            "only pause, resume, abort and retry take a database");
  EXPECT_EQ(refused(R"({"action":"pause","plan":"*","database":"shard_01"})"),
            "a database goes with one plan");
}

TEST(Control, ARetryOrPauseOfOneDatabaseCarriesTheDatabase) {
  for (const char* action : {"retry", "pause", "resume", "abort"}) {
    ControlRequest r;
    r.action = action;
    r.plan = "add_clinic_id";
    r.database = "shard_07";
    auto back = ParseControlRequest(FormatControlRequest(r));
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->database, "shard_07");
  }
}

TEST(Control, ASetRequestCarriesItsSettingsThroughTheFile) {
  ControlRequest r;
  r.action = "set";
  r.plan = "add_clinic_id";
  r.settings = "max_rows_per_second=5000 workers=default";
  auto back = ParseControlRequest(FormatControlRequest(r));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->settings, r.settings);
  EXPECT_EQ(back->plan, r.plan);
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {
TEST(ThrottleFile, EmptyHoldsEveryPlanElseTheNamedOnes) {
  EXPECT_TRUE(ThrottleFileHolds("", "a"));
  EXPECT_TRUE(ThrottleFileHolds("\n# comment\n", "a"));
  EXPECT_TRUE(ThrottleFileHolds("a\nb\n", "b"));
  EXPECT_FALSE(ThrottleFileHolds("a\nb\n", "ab"));
  EXPECT_TRUE(ThrottleFileHolds(" * \n", "zzz"));
}
}  // namespace
}  // namespace tide
