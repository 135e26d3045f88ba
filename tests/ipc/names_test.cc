#include "ipc/internal/names.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "ipc/bus.h"
#include "ipc/internal/partitioner.h"
#include "ipc/internal/process.h"

namespace runnel::internal {
namespace {

TEST(Names, ValidTopicNamesAreAccepted) {
  for (const char* n : {"a", "orders", "orders.v2", "A-Z_0-9", "...a", "a..b", "-", "_"}) {
    EXPECT_TRUE(ValidateTopicName(n).ok()) << n;
  }
  EXPECT_TRUE(ValidateTopicName(std::string(64, 'x')).ok());
}

TEST(Names, BadTopicNamesAreRefusedWithTheRule) {
  for (const std::string& n :
       {std::string(""), std::string("."), std::string(".."), std::string("a/b"),
        std::string("../etc"), std::string(65, 'x'), std::string("sp ace"),
        std::string("nul\0x", 5), std::string("caf\xc3\xa9")}) {
    const Status s = ValidateTopicName(n);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << n;
    EXPECT_NE(s.message().find("[A-Za-z0-9._-]"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("1 to 64"), std::string::npos) << s.message();
  }
  // The public wrapper gives the same answer.
  EXPECT_EQ(runnel::ValidateTopicName("a/b").code(), StatusCode::kInvalidArgument);
}

TEST(Names, BusNamesRefuseDotsSoFileNamesStayUnambiguous) {
  EXPECT_TRUE(ValidateBusName("default").ok());
  EXPECT_TRUE(ValidateBusName("my-bus_2").ok());
  const Status s = ValidateBusName("a.b");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("[A-Za-z0-9_-]"), std::string::npos) << s.message();
  EXPECT_EQ(ValidateBusName("").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateBusName(std::string(65, 'b')).code(), StatusCode::kInvalidArgument);
}

TEST(Names, ShmFilesAreNamedByBusTopicPartitionAndGeneration) {
  EXPECT_EQ(DirectoryShmName("b"), "runnel.b.dir");
  EXPECT_EQ(DirectoryLockPath("b"), "/dev/shm/runnel.b.lock");
  EXPECT_EQ(BrokerLockPath("b"), "/dev/shm/runnel.b.broker");
  EXPECT_EQ(RingShmName("b", "orders.v2", 3, 17), "runnel.b.orders.v2.3.17");
  EXPECT_EQ(ShmPath("runnel.b.dir"), "/dev/shm/runnel.b.dir");
  EXPECT_EQ(BusFilePrefix("b"), "runnel.b.");
}

// Vectors from Kafka's UtilsTest.testMurmur2 (clients/src/test/.../UtilsTest.java).
TEST(Partitioner, Murmur2MatchesKafka) {
  struct Case {
    const char* key;
    int32_t hash;
  };
  const Case cases[] = {
      {"21", -973932308},
      {"foobar", -790332482},
      {"a-little-bit-long-string", -985981536},
      {"a-little-bit-longer-string", -1486304829},
      {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
      {"abc", 479470107},
      {"1", -1993445489},
      {"12", 126087238},
      {"123", -267702483},
      {"1234", -1614185708},
      {"12345", -1188365604},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Murmur2(c.key, std::strlen(c.key)), c.hash) << c.key;
  }
}

TEST(Partitioner, KeyPartitionIsKafkasToPositiveModulo) {
  // (murmur2 & 0x7fffffff) % n, computed by hand for "foobar".
  const uint32_t positive = static_cast<uint32_t>(-790332482) & 0x7fffffffu;
  for (uint32_t n : {1u, 2u, 3u, 7u, 64u}) {
    EXPECT_EQ(KeyPartition("foobar", n), positive % n);
  }
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "k" + std::to_string(i);
    EXPECT_LT(KeyPartition(key, 5), 5u);
    EXPECT_EQ(KeyPartition(key, 5), KeyPartition(key, 5));
  }
}

TEST(Process, SelfStartTimeIsStableAndMatches) {
  const ProcessIdentity self = SelfIdentity();
  EXPECT_EQ(self.pid, ::getpid());
  ASSERT_NE(self.start_time, 0u);
  EXPECT_EQ(ProcessStartTime(self.pid), self.start_time);
  EXPECT_EQ(CheckProcess(self.pid, self.start_time), Liveness::kAlive);
}

TEST(Process, RecycledPidIsDead) {
  const ProcessIdentity self = SelfIdentity();
  // Same pid, another start time: what a recycled pid looks like.
  EXPECT_EQ(CheckProcess(self.pid, self.start_time + 1), Liveness::kDead);
}

TEST(Process, ExitedChildIsDead) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ASSERT_GT(pid, 0);
  const uint64_t start = ProcessStartTime(pid).value_or(0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(CheckProcess(pid, start), Liveness::kDead);
  EXPECT_EQ(CheckProcess(0, 0), Liveness::kDead);
}

}  // namespace
}  // namespace runnel::internal
