#include "util/audit_chain.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

std::vector<std::string> Chain(int n, std::string prev = "") {
  std::vector<std::string> lines;
  for (int i = 1; i <= n; ++i) {
    AuditEvent e{"step_finished", "p", "expand", "alice", JsonObject().Int("step", i)};
    lines.push_back(FormatAuditLine(i, "2026-11-21T14:00:0" + std::to_string(i) + ".000Z", e, prev));
    prev = AuditLineHash(lines.back());
  }
  return lines;
}

TEST(AuditChain, EachLineCarriesItsPredecessorsHash) {
  auto lines = Chain(3);
  EXPECT_EQ(lines[0].rfind("{\"seq\":1,\"ts\":\"2026-11-21T14:00:01.000Z\",\"event\":\"step_finished\","
                           "\"plan\":\"p\",\"phase\":\"expand\",\"actor\":\"alice\",\"step\":1,\"prev\":\"\",\"hash\":\"",
                           0),
            0u)
      << lines[0];
  EXPECT_NE(lines[1].find("\"prev\":\"" + AuditLineHash(lines[0]) + "\""), std::string::npos);
  auto c = VerifyAuditChain(lines, "");
  EXPECT_EQ(c.broken_line, 0u) << c.reason;
  EXPECT_EQ(c.last_hash, AuditLineHash(lines[2]));
}

TEST(AuditChain, DetectsAnEditedLine) {
  auto lines = Chain(4);
  lines[2].replace(lines[2].find("\"step\":3"), 8, "\"step\":9");
  auto c = VerifyAuditChain(lines, "");
  EXPECT_EQ(c.broken_line, 3u);
  EXPECT_NE(c.reason.find("changed"), std::string::npos);
}

TEST(AuditChain, DetectsADeletedOrReorderedLine) {
  auto lines = Chain(4);
  lines.erase(lines.begin() + 1);
  EXPECT_EQ(VerifyAuditChain(lines, "").broken_line, 2u);
  auto swapped = Chain(4);
  std::swap(swapped[1], swapped[2]);
  EXPECT_EQ(VerifyAuditChain(swapped, "").broken_line, 2u);
}

TEST(AuditChain, ContinuesAcrossARotatedFile) {
  auto first = Chain(2);
  auto second = Chain(2, AuditLineHash(first.back()));
  EXPECT_EQ(VerifyAuditChain(second, AuditLineHash(first.back())).broken_line, 0u);
  EXPECT_EQ(VerifyAuditChain(second, "0000").broken_line, 1u);
}

TEST(AuditChain, DetailsCannotForgeTheChainFields) {
  AuditEvent e{"x", "p", "", "", JsonObject().Str("prev", "forged").Str("hash", "forged")};
  const std::string line = FormatAuditLine(1, "t", e, "");
  EXPECT_EQ(line.find("forged"), std::string::npos);
  EXPECT_EQ(VerifyAuditChain({line}, "").broken_line, 0u);
}

TEST(AuditChain, ALinkIsTheSeqAndHashOfAWholeLine) {
  const auto lines = Chain(12);
  auto link = ParseAuditLink(lines[11]);
  ASSERT_TRUE(link.ok()) << link.status().message();
  EXPECT_EQ(link->seq, 12);
  EXPECT_EQ(link->hash, AuditLineHash(lines[11]));
}

TEST(AuditChain, ALineWithoutSeqOrHashIsNoLink) {
  const std::string line = Chain(1)[0];
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "does not begin with {\"seq\":"},
      {"not json at all", "does not begin with {\"seq\":"},
      {"{\"ts\":\"x\",\"seq\":1}", "does not begin with {\"seq\":"},
      {"{\"seq\":,\"ts\":1}", "seq is not a number"},
      {"{\"seq\":0," + line.substr(8), "seq is not a number"},
      {"{\"seq\":-3," + line.substr(8), "seq is not a number"},
      {"{\"seq\":99999999999999999999," + line.substr(8), "seq is not a number"},
      {line.substr(0, line.size() / 2), "does not end with its hash"},
      {line.substr(0, line.size() - 1), "does not end with its hash"},
      {line + "x", "does not end with its hash"},
      {line.substr(0, line.size() - 10) + "ZZZZZZZZ\"}", "not 64 hex digits"},
  };
  for (const auto& [text, why] : bad) {
    auto link = ParseAuditLink(text);
    ASSERT_FALSE(link.ok()) << text;
    EXPECT_NE(link.status().message().find(why), std::string::npos) << text << ": " << link.status().message();
  }
}

}  // namespace
}  // namespace tide
