#include "obs/audit_log.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace tide {
namespace {

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/tide-audit-log-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/audit.jsonl";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  std::string Read() const {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void Put(const std::string& text) const { std::ofstream(path_, std::ios::binary) << text; }
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    std::istringstream in(Read());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  // The tail of the file as ReadAuditTail sees it.
  Result<std::optional<AuditLink>> Tail() const {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    auto tail = ReadAuditTail(fd, path_);
    ::close(fd);
    return tail;
  }

  static AuditEvent Event(int n, size_t padding = 0) {
    return AuditEvent{"step_finished", "p", "expand", "",
                      JsonObject().Int("step", n).Str("sql", std::string(padding, 'x'))};
  }

  std::string dir_, path_;
};

TEST_F(AuditLogTest, ASyncFailureAfterAGoodWriteNeitherRepeatsASeqNorBreaksTheChain) {
  int syncs = 0;
  AuditLog log(path_, [&](int fd) {
    ++syncs;
    if (syncs == 2 || syncs == 3) return errno = EIO, -1;
    return ::fdatasync(fd);
  });
  ASSERT_TRUE(log.Open().ok());
  ASSERT_TRUE(log.Write(Event(1)).ok());
  const Status failed = log.Write(Event(2));
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("cannot sync audit log " + path_), std::string::npos) << failed.message();
  const std::string after_failure = Read();
  EXPECT_FALSE(log.Check().ok()) << "the file must sync again before it takes more";
  EXPECT_EQ(Read(), after_failure) << "nothing written while it does not sync";
  ASSERT_TRUE(log.Write(Event(2)).ok()) << "the event written again";
  ASSERT_TRUE(log.Write(Event(3)).ok());

  const auto lines = Lines();
  ASSERT_EQ(lines.size(), 4u) << Read();
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].rfind("{\"seq\":" + std::to_string(i + 1) + ",", 0), 0u) << lines[i];
  }
  const ChainCheck check = VerifyAuditChain(lines, "");
  EXPECT_EQ(check.broken_line, 0u) << check.reason;
}

TEST_F(AuditLogTest, ALastLineOver64KiBContinuesTheChainAfterARestart) {
  {
    AuditLog log(path_);
    ASSERT_TRUE(log.Open().ok());
    ASSERT_TRUE(log.Write(Event(1)).ok());
    ASSERT_TRUE(log.Write(Event(2, 200 * 1024)).ok());
  }
  AuditLog restarted(path_);
  ASSERT_TRUE(restarted.Open().ok());
  ASSERT_TRUE(restarted.Write(Event(3)).ok());
  const auto lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2].rfind("{\"seq\":3,", 0), 0u) << lines[2].substr(0, 40);
  const ChainCheck check = VerifyAuditChain(lines, "");
  EXPECT_EQ(check.broken_line, 0u) << check.reason;
}

TEST_F(AuditLogTest, TheTailIsTheWholeLastLineWhateverItsLength) {
  for (size_t padding : {0, 65000, 65536, 65537, 131072, 1000000}) {
    const std::string first = FormatAuditLine(1, "t", Event(1), "");
    const std::string last = FormatAuditLine(2, "t", Event(2, padding), AuditLineHash(first));
    Put(first + "\n" + last + "\n");
    auto tail = Tail();
    ASSERT_TRUE(tail.ok()) << padding << ": " << tail.status().message();
    ASSERT_TRUE(tail->has_value()) << padding;
    EXPECT_EQ(tail.value()->seq, 2) << padding;
    EXPECT_EQ(tail.value()->hash, AuditLineHash(last)) << padding;
  }
}

TEST_F(AuditLogTest, TheTailOfAnEmptyLogIsNoLineAndBlankLinesAfterTheLastAreSkipped) {
  Put("");
  auto empty = Tail();
  ASSERT_TRUE(empty.ok()) << empty.status().message();
  EXPECT_FALSE(empty->has_value());
  const std::string line = FormatAuditLine(7, "t", Event(7), "");
  Put(line + "\n\n\n");
  auto tail = Tail();
  ASSERT_TRUE(tail.ok()) << tail.status().message();
  ASSERT_TRUE(tail->has_value());
  EXPECT_EQ(tail.value()->seq, 7);
}

TEST_F(AuditLogTest, RefusesToOpenALogWhoseLastLineIsNotAnAuditLine) {
  const std::string good = FormatAuditLine(1, "t", Event(1), "");
  const std::string text = good + "\n" + good + "\n" + "not an audit line\n";
  Put(text);
  AuditLog log(path_);
  const Status s = log.Open();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("the audit log " + path_), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("(line 3: "), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("`not an audit line`"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("does not start the chain again at seq 1"), std::string::npos) << s.message();
  EXPECT_FALSE(log.Write(Event(2)).ok()) << "nothing is written after such a line";
  EXPECT_EQ(Read(), text);
}

TEST_F(AuditLogTest, RefusesToOpenALogWhoseLastLineWasCutShort) {
  const std::string first = FormatAuditLine(1, "t", Event(1), "");
  const std::string second = FormatAuditLine(2, "t", Event(2, 100000), AuditLineHash(first));
  for (const std::string& cut : {second.substr(0, second.size() / 2), second}) {
    Put(first + "\n" + cut);
    AuditLog log(path_);
    const Status s = log.Open();
    ASSERT_FALSE(s.ok()) << cut.size();
    EXPECT_NE(s.message().find("(line 2: "), std::string::npos) << s.message();
  }
  EXPECT_NE(Tail().status().message().find("no newline follows it"), std::string::npos);
}

}  // namespace
}  // namespace tide
