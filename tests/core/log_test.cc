// The library's log sink: lines go to the installed sink with their level,
// one call each and without a newline; nullptr restores stderr.

#include "core/log.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace runnel {
namespace {

struct CapturedLine {
  LogLevel level;
  std::string line;
};

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogSink([this](LogLevel level, std::string_view line) {
      lines_.push_back({level, std::string(line)});
    });
  }
  void TearDown() override { SetLogSink(nullptr); }
  std::vector<CapturedLine> lines_;  // the sink calls are serialized
};

TEST_F(LogTest, AnInstalledSinkGetsEachLineWithItsLevelAndNoNewline) {
  Log(LogLevel::kInfo, "runnel broker: %s: log opened; persisting", "orders/0");
  Log(LogLevel::kError, "runnel persister: %s: %d", "t/1", 28);
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(lines_[0].level, LogLevel::kInfo);
  EXPECT_EQ(lines_[0].line, "runnel broker: orders/0: log opened; persisting");
  EXPECT_EQ(lines_[1].level, LogLevel::kError);
  EXPECT_EQ(lines_[1].line, "runnel persister: t/1: 28");
  EXPECT_EQ(LogLevelName(LogLevel::kWarning), "warning");
}

TEST_F(LogTest, ALineLongerThanTheBufferIsCutNotOverrun) {
  const std::string long_text(10000, 'x');
  Log(LogLevel::kWarning, "%s", long_text.c_str());
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0].line, std::string(4095, 'x'));
}

TEST_F(LogTest, LinesFromSeveralThreadsAreDeliveredOneAtATime) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 500; ++i) Log(LogLevel::kInfo, "thread %d line %d", t, i);
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(lines_.size(), 2000u);  // the vector would be torn by concurrent calls
}

TEST_F(LogTest, NullptrRestoresStderr) {
  SetLogSink(nullptr);
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kWarning, "runnel broker: %s", "to stderr");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "runnel broker: to stderr\n");
  EXPECT_TRUE(lines_.empty());
}

}  // namespace
}  // namespace runnel
