// Live settings (tidectl set): parsing, storage text, and how they lie over a task's options.
#include "engine/live_settings.h"

#include <gtest/gtest.h>

#include "engine/backfill.h"

namespace tide {
namespace {

TEST(LiveSettingsTest, ParsesEveryKeyAndFormatsWhatItParsed) {
  auto c = ParseLiveChange(std::vector<std::string>{
      "max_rows_per_second=5000", "batch_size=2000", "target_batch_time=200ms", "workers=3",
      "yield_ratio=3.5", "pause_between_batches=50ms", "max_replication_lag=5s"});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(*c->set.max_rows_per_second, 5000);
  EXPECT_EQ(*c->set.batch_size, 2000);
  EXPECT_EQ(c->set.target_batch_time->count(), 200);
  EXPECT_EQ(*c->set.workers, 3);
  EXPECT_DOUBLE_EQ(*c->set.yield_ratio, 3.5);
  EXPECT_EQ(c->set.pause_between_batches->count(), 50);
  EXPECT_EQ(c->set.max_replication_lag->count(), 5000);
  const std::string text = FormatLiveSettings(c->set);
  auto back = ParseLiveSettings(text);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(FormatLiveSettings(*back), text);
}

TEST(LiveSettingsTest, ABadItemIsNamedWithWhatIsAccepted) {
  auto unknown = ParseLiveChange(std::vector<std::string>{"lock_timeout=1s"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("lock_timeout"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("max_rows_per_second"), std::string::npos);
  auto negative = ParseLiveChange(std::vector<std::string>{"workers=0"});
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("1..64"), std::string::npos);
  EXPECT_FALSE(ParseLiveChange(std::vector<std::string>{"workers"}).ok());
  EXPECT_FALSE(ParseLiveChange(std::vector<std::string>{"target_batch_time=soon"}).ok());
  EXPECT_FALSE(ParseLiveChange(std::vector<std::string>{}).ok());
  EXPECT_FALSE(ParseLiveChange(std::vector<std::string>{"yield_ratio=-1"}).ok());
}

TEST(LiveSettingsTest, DefaultClearsAKeyAndAChangeKeepsTheOthers) {
  LiveSettings s;
  s.max_rows_per_second = 100;
  s.workers = 2;
  auto c = ParseLiveChange(std::string("max_rows_per_second=default batch_size=500"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(DescribeChange(*c), "batch_size=500 max_rows_per_second=default");
  const LiveSettings after = ApplyChange(s, *c);
  EXPECT_FALSE(after.max_rows_per_second.has_value());
  EXPECT_EQ(*after.workers, 2);
  EXPECT_EQ(*after.batch_size, 500);
  auto all = ParseLiveChange(std::string("workers=default batch_size=default"));
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(ApplyChange(after, *all).empty());
  EXPECT_FALSE(ParseLiveChange(std::string("nonsense=default")).ok());
}

TEST(LiveSettingsTest, OverlayTakesTheLiveValuesOverTheTasksOwn) {
  BackfillOptions o;
  o.workers = 1;
  o.max_rows_per_second = 0;
  o.sizer = BatchSizerOptions{1000, 100, 50000, Millis(500)};
  o.health.yield_ratio = 2;
  LiveSettings s;
  EXPECT_EQ(Overlay(o, s).workers, 1);
  s.max_rows_per_second = 5000;
  s.workers = 4;
  s.batch_size = 50;
  s.yield_ratio = 4;
  s.target_batch_time = Millis(100);
  const BackfillOptions n = Overlay(o, s);
  EXPECT_EQ(n.max_rows_per_second, 5000);
  EXPECT_EQ(n.workers, 4);
  EXPECT_EQ(n.sizer.initial, 50);
  EXPECT_EQ(n.sizer.max, 50) << "batch_size is the largest batch";
  EXPECT_LE(n.sizer.min, 50) << "a statement timeout can still halve it";
  EXPECT_EQ(n.sizer.target.count(), 100);
  EXPECT_DOUBLE_EQ(n.health.yield_ratio, 4);
  auto values = LiveValues(s);
  EXPECT_EQ(values.size(), 5u);
}

}  // namespace
}  // namespace tide
