#include "tide/duration.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

Millis Parse(const std::string& text) {
  std::string error;
  auto d = ParseDuration(text, &error);
  EXPECT_TRUE(d.has_value()) << text << ": " << error;
  return d.value_or(Millis(-1));
}

std::string ErrorOf(const std::string& text) {
  std::string error;
  EXPECT_FALSE(ParseDuration(text, &error).has_value()) << text;
  return error;
}

TEST(Duration, ParsesEveryUnit) {
  EXPECT_EQ(Parse("250ms"), Millis(250));
  EXPECT_EQ(Parse("2s"), Millis(2000));
  EXPECT_EQ(Parse("5m"), Millis(300000));
  EXPECT_EQ(Parse("1h"), Millis(3600000));
  EXPECT_EQ(Parse("0s"), Millis(0));
  EXPECT_EQ(Parse("7d"), Millis(7LL * 24 * 3600000));
}

TEST(Duration, RejectsANumberWithoutUnitAndSaysSo) {
  EXPECT_NE(ErrorOf("2000").find("has no unit"), std::string::npos);
}

TEST(Duration, RejectsUnknownUnitsNegativesAndJunk) {
  EXPECT_NE(ErrorOf("3w").find("unknown unit `w`"), std::string::npos);
  ErrorOf("-1s");
  ErrorOf("");
  ErrorOf("s");
  ErrorOf("1.5s");
  ErrorOf("99999999999999999s");
}

TEST(Duration, FormatsTheShortestExactForm) {
  EXPECT_EQ(FormatDuration(Millis(1500)), "1500ms");
  EXPECT_EQ(FormatDuration(Millis(2000)), "2s");
  EXPECT_EQ(FormatDuration(Millis(120000)), "2m");
  EXPECT_EQ(FormatDuration(Millis(7200000)), "2h");
  EXPECT_EQ(FormatDuration(Millis(0)), "0ms");
}

}  // namespace
}  // namespace tide
