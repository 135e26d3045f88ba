// Single-process tests of the bus: opening, topics, files under /dev/shm.

#include "ipc/bus.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/ring.h"
#include "gtest/gtest.h"
#include "ipc/internal/directory.h"
#include "ipc/internal/names.h"
#include "tests/ipc/test_util.h"

namespace runnel {
namespace {

using testing::BusFiles;
using testing::ScopedBusName;

TopicOptions Small(uint32_t partitions = 1) {
  TopicOptions o;
  o.partitions = partitions;
  o.ring_bytes = 64 * 1024;
  return o;
}

uint32_t FileMode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

TEST(Bus, OpenCreatesTheDirectoryAndLockWithMode0600) {
  ScopedBusName name;
  const mode_t old = ::umask(0);  // a permissive umask must not widen the mode
  auto bus = Bus::Open(*name);
  ::umask(old);
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  EXPECT_EQ(bus->name(), *name);
  EXPECT_EQ(FileMode("/dev/shm/runnel." + *name + ".dir"), 0600u);
  EXPECT_EQ(FileMode("/dev/shm/runnel." + *name + ".lock"), 0600u);
  ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
  EXPECT_EQ(FileMode("/dev/shm/runnel." + *name + ".t.0.1"), 0600u);
  EXPECT_EQ(bus->Info()->file_mode, 0600u);
}

TEST(Bus, GroupSharedGives0660WhateverTheUmask) {
  ScopedBusName name;
  const mode_t old = ::umask(077);  // would strip group bits from a plain create
  BusOptions o;
  o.group_shared = true;
  auto bus = Bus::Open(*name, o);
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  Status s = bus->CreateTopic("t", Small());
  ::umask(old);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(FileMode("/dev/shm/runnel." + *name + ".dir"), 0660u);
  EXPECT_EQ(FileMode("/dev/shm/runnel." + *name + ".lock"), 0660u);
  EXPECT_EQ(FileMode("/dev/shm/runnel." + *name + ".t.0.1"), 0660u);
  // The mode belongs to the bus: a later opener without group_shared keeps it.
  auto again = Bus::Open(*name);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->CreateTopic("u", Small()).ok());
  EXPECT_EQ(FileMode("/dev/shm/runnel." + *name + ".u.0.2"), 0660u);
}

TEST(Bus, OpenWithoutCreateIfMissingIsNotFound) {
  ScopedBusName name;
  BusOptions o;
  o.create_if_missing = false;
  auto bus = Bus::Open(*name, o);
  ASSERT_FALSE(bus.ok());
  EXPECT_EQ(bus.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bus.status().message().find(*name), std::string::npos);
  EXPECT_TRUE(BusFiles(*name).empty());
}

// A creator killed after sizing the directory, part way through formatting
// it (kill -9 during Open): the next Open that may create formats it; one
// that may not says so. It was kUnavailable for every Open, for good.
TEST(Bus, ADirectoryWhoseCreatorDiedBeforeFormattingItIsFormattedByTheNextCreator) {
  ScopedBusName name;
  const std::string path = "/dev/shm/runnel." + *name + ".dir";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, internal::Directory::kBytes), 0);
  const std::string partial(64, 'p');  // a few fields written, the magic not yet
  ASSERT_EQ(::pwrite(fd, partial.data(), partial.size(), 128),
            static_cast<ssize_t>(partial.size()));
  ::close(fd);
  BusOptions attach;
  attach.create_if_missing = false;
  auto refused = Bus::Open(*name, attach);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("open it with create_if_missing"), std::string::npos)
      << refused.status().message();
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  EXPECT_TRUE(bus->CreateTopic("t", {}).ok());
  EXPECT_TRUE(Bus::Open(*name, attach).ok());
}

// A bus with topics whose directory lost its magic (a peer scribbled on it)
// is not taken for a creator's leftovers: formatting it would forget its
// topics while their rings and processes live on.
TEST(Bus, ADirectoryThatLostItsMagicWhileTheBusHasRingsIsNotReformatted) {
  ScopedBusName name;
  {
    auto bus = Bus::Open(*name);
    ASSERT_TRUE(bus.ok()) << bus.status().ToString();
    ASSERT_TRUE(bus->CreateTopic("t", {}).ok());
  }
  const std::string path = "/dev/shm/runnel." + *name + ".dir";
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const uint64_t zero = 0;  // DirectoryHeader::magic, the first field
  ASSERT_EQ(::pwrite(fd, &zero, sizeof(zero), 0), static_cast<ssize_t>(sizeof(zero)));
  ::close(fd);
  auto bus = Bus::Open(*name);
  ASSERT_FALSE(bus.ok());
  EXPECT_EQ(bus.status().code(), StatusCode::kCorruption);
  EXPECT_NE(bus.status().message().find("lost its format mark"), std::string::npos)
      << bus.status().message();
}

// Killed even earlier, before sizing it: an Open that may not create says
// what happened (it was kCorruption, "too small").
TEST(Bus, AnEmptyDirectoryFileIsUnavailableToAnOpenThatMayNotCreate) {
  ScopedBusName name;
  const std::string path = "/dev/shm/runnel." + *name + ".dir";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  BusOptions attach;
  attach.create_if_missing = false;
  auto refused = Bus::Open(*name, attach);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().ToString();
  EXPECT_TRUE(Bus::Open(*name).ok());
}

TEST(Bus, BadBusNameIsRefused) {
  auto bus = Bus::Open("a/b");
  EXPECT_EQ(bus.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Bus::Open("has.dot").status().code(), StatusCode::kInvalidArgument);
}

TEST(Bus, BadTopicNamesAreRefusedWithTheRule) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  for (const std::string& n :
       {std::string(""), std::string(".."), std::string("a/b"), std::string(65, 'x')}) {
    const Status s = bus->CreateTopic(n, Small());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << n;
    EXPECT_NE(s.message().find("[A-Za-z0-9._-]"), std::string::npos) << s.message();
    EXPECT_EQ(bus->CreateProducer(n).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(bus->DeleteTopic(n).code(), StatusCode::kInvalidArgument);
  }
}

TEST(Bus, BadTopicOptionsAreRefused) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  TopicOptions o = Small();
  o.partitions = 0;
  EXPECT_EQ(bus->CreateTopic("t", o).code(), StatusCode::kInvalidArgument);
  o.partitions = 65;
  EXPECT_EQ(bus->CreateTopic("t", o).code(), StatusCode::kInvalidArgument);
  o = Small();
  o.ring_bytes = 100000;  // not a power of two
  EXPECT_EQ(bus->CreateTopic("t", o).code(), StatusCode::kInvalidArgument);
  o = Small();
  o.max_record_bytes = 40000;  // more than half the ring
  const Status s = bus->CreateTopic("t", o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("max_record_bytes"), std::string::npos) << s.message();
  EXPECT_TRUE(bus->ListTopics()->empty());
}

TEST(Bus, CreateTopicIsIdempotentWithTheSameSettings) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("orders", Small(3)).ok());
  ASSERT_TRUE(bus->CreateTopic("orders", Small(3)).ok());
  auto topics = bus->ListTopics();
  ASSERT_TRUE(topics.ok());
  ASSERT_EQ(topics->size(), 1u);
  EXPECT_EQ((*topics)[0].generation, 1u);  // not re-created
  // A memory-only topic has no log: log settings do not make it another.
  TopicOptions memory = Small(1);
  memory.durable = false;
  memory.retention_ms = 1000;
  ASSERT_TRUE(bus->CreateTopic("ticks", memory).ok());
  memory.retention_ms = 0;
  memory.segment_bytes *= 2;
  EXPECT_TRUE(bus->CreateTopic("ticks", memory).ok());
}

TEST(Bus, CreateTopicWithOtherSettingsIsAlreadyExistsNamingTheSetting) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("orders", Small(3)).ok());
  Status s = bus->CreateTopic("orders", Small(4));
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("partitions 3 (requested 4)"), std::string::npos) << s.message();
  TopicOptions o = Small(3);
  o.retention_ms = 1000;
  s = bus->CreateTopic("orders", o);
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("retention_ms 0 (requested 1000)"), std::string::npos) << s.message();
}

TEST(Bus, ListAndDescribeShowSettingsPartitionsAndClients) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  TopicOptions o = Small(2);
  o.segment_bytes = 1 << 20;
  o.retention_bytes = 1 << 30;
  o.fsync = FsyncPolicy::kAlways;
  ASSERT_TRUE(bus->CreateTopic("a", o).ok());
  ASSERT_TRUE(bus->CreateTopic("b", Small(1)).ok());
  auto list = bus->ListTopics();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);

  auto producer = bus->CreateProducer("a");
  ASSERT_TRUE(producer.ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(producer->TrySend(std::nullopt, "v", {}, 1).ok());
  ConsumerOptions co;
  co.partitions = {1};
  auto consumer = bus->CreateConsumer("a", co);
  ASSERT_TRUE(consumer.ok());
  EXPECT_EQ(consumer->Poll([](const ConsumerRecord&) {}, 4).records, 4u);

  auto info = bus->DescribeTopic("a");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->name, "a");
  EXPECT_EQ(info->options.partitions, 2u);
  EXPECT_EQ(info->options.segment_bytes, 1u << 20);
  EXPECT_EQ(info->options.retention_bytes, 1u << 30);
  EXPECT_EQ(info->options.fsync, FsyncPolicy::kAlways);
  EXPECT_EQ(info->options.max_record_bytes, 64u * 1024 / 4 - kRecordOverheadBytes);
  ASSERT_EQ(info->partitions.size(), 2u);
  EXPECT_EQ(info->partitions[0].next_offset, 0u);
  EXPECT_EQ(info->partitions[1].next_offset, 10u);
  EXPECT_EQ(info->partitions[1].earliest_offset, 0u);
  ASSERT_EQ(info->producers.size(), 1u);
  EXPECT_EQ(info->producers[0].pid, ::getpid());
  EXPECT_TRUE(info->producers[0].alive);
  ASSERT_EQ(info->producers[0].partitions.size(), 2u);
  EXPECT_EQ(info->producers[0].partitions[1].position, 10u);
  ASSERT_EQ(info->consumers.size(), 1u);
  ASSERT_EQ(info->consumers[0].partitions.size(), 1u);
  EXPECT_EQ(info->consumers[0].partitions[0].partition, 1u);
  EXPECT_EQ(info->consumers[0].partitions[0].position, 4u);
  EXPECT_EQ(info->consumers[0].partitions[0].lag, 6u);

  EXPECT_EQ(bus->DescribeTopic("nope").status().code(), StatusCode::kNotFound);
  auto bi = bus->Info();
  ASSERT_TRUE(bi.ok());
  EXPECT_EQ(bi->topics, 2u);
  EXPECT_EQ(bi->clients, 2u);
}

TEST(Bus, ClosingClientsReleasesTheirRegistrations) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
  {
    auto p = bus->CreateProducer("t");
    auto c = bus->CreateConsumer("t");
    ASSERT_TRUE(p.ok() && c.ok());
    Producer moved = std::move(*p);  // a moved-from client releases nothing
    EXPECT_EQ(bus->Info()->clients, 2u);
  }
  EXPECT_EQ(bus->Info()->clients, 0u);
}

TEST(Bus, DeleteTopicUnlinksRingsAndAttachedClientsSeeNotFound) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Small(2)).ok());
  auto producer = bus->CreateProducer("t");
  auto consumer = bus->CreateConsumer("t");
  ASSERT_TRUE(producer.ok() && consumer.ok());
  ASSERT_TRUE(producer->TrySend(std::nullopt, "before").ok());
  EXPECT_EQ(BusFiles(*name).size(), 4u);  // dir, lock, 2 rings

  ASSERT_TRUE(bus->DeleteTopic("t").ok());
  EXPECT_EQ(BusFiles(*name).size(), 2u);
  EXPECT_EQ(bus->DeleteTopic("t").code(), StatusCode::kNotFound);
  EXPECT_TRUE(bus->ListTopics()->empty());
  EXPECT_EQ(bus->Info()->clients, 0u);  // registrations released by the delete

  // The mapping stays valid; the clients notice within their check interval.
  SendResult r;
  for (uint32_t i = 0; i <= Producer::kTopicCheckInterval; ++i) {
    r = producer->TrySend(std::nullopt, "after");
    if (r.status == SendStatus::kTopicDeleted) break;
  }
  EXPECT_EQ(r.status, SendStatus::kTopicDeleted);
  EXPECT_EQ(producer->Explain(r).code(), StatusCode::kNotFound);
  EXPECT_EQ(consumer->CheckTopic().code(), StatusCode::kNotFound);
  PollResult pr = consumer->Poll([](const ConsumerRecord&) {}, 10);
  EXPECT_EQ(pr.status, PollStatus::kTopicDeleted);
  EXPECT_EQ(bus->CreateProducer("t").status().code(), StatusCode::kNotFound);
}

TEST(Bus, ConsumerWaitingInPollForNoticesTheDelete) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
  auto consumer = bus->CreateConsumer("t");
  ASSERT_TRUE(consumer.ok());
  std::thread deleter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_TRUE(bus->DeleteTopic("t").ok());
  });
  const int64_t start = MonotonicNanos();
  PollResult r = consumer->PollFor([](const ConsumerRecord&) {}, 10, std::chrono::seconds(5));
  deleter.join();
  EXPECT_EQ(r.status, PollStatus::kTopicDeleted);
  EXPECT_LT(MonotonicNanos() - start, 1'000'000'000);  // within a 100 ms wait slice or so
}

TEST(Bus, RecreatedTopicGetsANewGenerationAndFreshRings) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
  auto old_producer = bus->CreateProducer("t");
  ASSERT_TRUE(old_producer.ok());
  ASSERT_TRUE(old_producer->TrySend(std::nullopt, "old").ok());
  ASSERT_TRUE(bus->DeleteTopic("t").ok());
  ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
  EXPECT_EQ(bus->DescribeTopic("t")->generation, 2u);
  EXPECT_EQ(FileMode("/dev/shm/runnel." + *name + ".t.0.2"), 0600u);
  // The old producer writes into its unlinked mapping, never the new ring.
  EXPECT_EQ(old_producer->CheckTopic().code(), StatusCode::kNotFound);
  auto consumer = bus->CreateConsumer("t");
  ASSERT_TRUE(consumer.ok());
  EXPECT_EQ(consumer->Poll([](const ConsumerRecord&) {}, 10).records, 0u);
}

TEST(Bus, ScribbledDirectoryVersionIsRefusedNamingBothVersions) {
  ScopedBusName name;
  { ASSERT_TRUE(Bus::Open(*name).ok()); }
  const std::string path = "/dev/shm/runnel." + *name + ".dir";
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const uint32_t v = (2u << 16) | 5u;
  ASSERT_EQ(::pwrite(fd, &v, sizeof v, offsetof(internal::DirectoryHeader, version)),
            static_cast<ssize_t>(sizeof v));
  ::close(fd);
  auto bus = Bus::Open(*name);
  ASSERT_FALSE(bus.ok());
  EXPECT_EQ(bus.status().code(), StatusCode::kVersionMismatch);
  EXPECT_NE(bus.status().message().find("2.5"), std::string::npos) << bus.status().message();
  EXPECT_NE(bus.status().message().find("1.2"), std::string::npos) << bus.status().message();
  EXPECT_NE(bus.status().message().find(path), std::string::npos) << bus.status().message();
  EXPECT_NE(bus.status().message().find(" bus remove, or rm /dev/shm/runnel."), std::string::npos);
  // The documented remedy works.
  ASSERT_TRUE(Bus::Remove(*name).ok());
  EXPECT_TRUE(Bus::Open(*name).ok());
}

TEST(Bus, GarbageDirectoryIsCorruption) {
  ScopedBusName name;
  const std::string path = "/dev/shm/runnel." + *name + ".dir";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  const std::string junk(8192, 'j');
  ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  ::close(fd);
  auto bus = Bus::Open(*name);
  ASSERT_FALSE(bus.ok());
  EXPECT_EQ(bus.status().code(), StatusCode::kCorruption);
  EXPECT_NE(bus.status().message().find("bad magic"), std::string::npos);
}

TEST(Bus, AScribbledRingSaltIsCorruptionNamingTheRingFile) {
  ScopedBusName name;
  {
    auto bus = Bus::Open(*name);
    ASSERT_TRUE(bus.ok());
    ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
  }
  // A salt that passes every range check: readers that took it would look
  // for tags no producer writes, and see nothing.
  const std::string path = "/dev/shm/runnel." + *name + ".t.0.1";
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint64_t salt = 0;
  ASSERT_EQ(::pread(fd, &salt, sizeof salt, offsetof(internal::RingControl, salt)), 8);
  salt ^= 0x40;
  ASSERT_EQ(::pwrite(fd, &salt, sizeof salt, offsetof(internal::RingControl, salt)), 8);
  ::close(fd);
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  auto consumer = bus->CreateConsumer("t");
  ASSERT_FALSE(consumer.ok());
  EXPECT_EQ(consumer.status().code(), StatusCode::kCorruption);
  EXPECT_NE(consumer.status().message().find(path), std::string::npos)
      << consumer.status().message();
  EXPECT_NE(consumer.status().message().find("checksum"), std::string::npos);
  EXPECT_EQ(bus->CreateProducer("t").status().code(), StatusCode::kCorruption);
}

TEST(Bus, RemoveUnlinksEveryFileOfThatBusAndNoOther) {
  ScopedBusName a;
  ScopedBusName b;
  auto bus_a = Bus::Open(*a);
  auto bus_b = Bus::Open(*b);
  ASSERT_TRUE(bus_a.ok() && bus_b.ok());
  ASSERT_TRUE(bus_a->CreateTopic("t.x", Small(3)).ok());
  ASSERT_TRUE(bus_b->CreateTopic("t", Small(1)).ok());
  EXPECT_EQ(BusFiles(*a).size(), 5u);
  ASSERT_TRUE(Bus::Remove(*a).ok());
  EXPECT_TRUE(BusFiles(*a).empty());
  EXPECT_EQ(BusFiles(*b).size(), 3u);
  EXPECT_EQ(Bus::Remove(*a).code(), StatusCode::kNotFound);
  EXPECT_EQ(Bus::Remove("bad.name").code(), StatusCode::kInvalidArgument);
}

TEST(Bus, ReopenedBusKeepsTopicsAndRingData) {
  ScopedBusName name;
  {
    auto bus = Bus::Open(*name);
    ASSERT_TRUE(bus.ok());
    ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
    auto p = bus->CreateProducer("t");
    ASSERT_TRUE(p.ok());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(p->TrySend("k", "value-" + std::to_string(i)).ok());
  }
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  auto c = bus->CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  std::vector<std::string> got;
  c->Poll([&](const ConsumerRecord& r) { got.emplace_back(r.value()); }, 100);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[4], "value-4");
}

TEST(Bus, TopicTableFullIsResourceExhausted) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  for (uint32_t i = 0; i < internal::kMaxTopics; ++i) {
    ASSERT_TRUE(bus->CreateTopic("t" + std::to_string(i), Small()).ok()) << i;
  }
  const Status s = bus->CreateTopic("one-more", Small());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("128"), std::string::npos);
}

}  // namespace
}  // namespace runnel
