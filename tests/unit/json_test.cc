#include <gtest/gtest.h>

#include "tide/json.h"
#include "util/json_parse.h"

namespace tide {
namespace {

TEST(Json, EscapesControlCharactersQuotesAndBackslashes) {
  EXPECT_EQ(JsonEscape("a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\u0001\"");
}

TEST(Json, ObjectsKeepFieldOrder) {
  JsonObject o;
  o.Str("b", "x").Int("a", -3).Bool("c", true).Num("d", 1.5);
  EXPECT_EQ(o.ToString(), "{\"b\":\"x\",\"a\":-3,\"c\":true,\"d\":1.500}");
}

TEST(Json, FlatObjectsRoundTrip) {
  JsonObject o;
  o.Str("sql", "SELECT \"x\"\n FROM t").Int("n", 42).Str("u", "é");
  auto back = ParseFlatJson(o.ToString());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ((*back)["sql"], "SELECT \"x\"\n FROM t");
  EXPECT_EQ((*back)["n"], "42");
  EXPECT_EQ((*back)["u"], "é");
}

TEST(Json, NestedValuesAreKeptAsTheirJsonText) {
  JsonObject o;
  o.Str("event", "step_finished").Raw("statements", "[{\"sql\":\"SELECT ']'\",\"n\":1},{}]").Int("step", 2);
  auto back = ParseFlatJson(o.ToString());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ((*back)["statements"], "[{\"sql\":\"SELECT ']'\",\"n\":1},{}]");
  EXPECT_EQ((*back)["step"], "2");
  EXPECT_FALSE(ParseFlatJson("{\"a\":[1,2}").has_value());
}

TEST(Json, RejectsBrokenLines) {
  EXPECT_FALSE(ParseFlatJson("{\"a\":").has_value());
  EXPECT_FALSE(ParseFlatJson("not json").has_value());
  EXPECT_FALSE(ParseFlatJson("{\"a\":1} trailing").has_value());
}

}  // namespace
}  // namespace tide
