#include "ipc/internal/directory.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "gtest/gtest.h"

namespace runnel::internal {
namespace {

struct Free {
  void operator()(void* p) const { std::free(p); }
};

class DirectoryMemory {
 public:
  DirectoryMemory() : mem_(static_cast<std::byte*>(std::aligned_alloc(4096, Directory::kBytes))) {
    std::memset(mem_.get(), 0, Directory::kBytes);
  }
  std::span<std::byte> span() { return {mem_.get(), Directory::kBytes}; }
  std::byte* data() { return mem_.get(); }

 private:
  std::unique_ptr<std::byte, Free> mem_;
};

TEST(Directory, FormattedDirectoryPassesTheCheck) {
  DirectoryMemory m;
  EXPECT_EQ(Directory::LoadMagic(m.data()), 0u);
  Directory::Format(m.span(), "bus1", 0600);
  EXPECT_EQ(Directory::LoadMagic(m.data()), kDirectoryMagic);
  EXPECT_TRUE(Directory::Check(m.span(), "/dev/shm/x", "bus1").ok());
  EXPECT_EQ(Directory(m.data()).file_mode(), 0600u);
}

TEST(Directory, ScribbledVersionIsAVersionMismatchNamingBothVersions) {
  DirectoryMemory m;
  Directory::Format(m.span(), "bus1", 0600);
  const uint32_t v = (7u << 16) | 3u;
  std::memcpy(m.data() + offsetof(DirectoryHeader, version), &v, sizeof v);
  const Status s = Directory::Check(m.span(), "/dev/shm/runnel.bus1.dir", "bus1");
  EXPECT_EQ(s.code(), StatusCode::kVersionMismatch);
  EXPECT_NE(s.message().find("7.3"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("1.2"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("/dev/shm/runnel.bus1.dir"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("runnel --bus bus1 bus remove"), std::string::npos) << s.message();
}

TEST(Directory, MinorVersionBumpIsAccepted) {
  DirectoryMemory m;
  Directory::Format(m.span(), "bus1", 0600);
  const uint32_t v = (kDirectoryVersionMajor << 16) | 9u;
  std::memcpy(m.data() + offsetof(DirectoryHeader, version), &v, sizeof v);
  EXPECT_TRUE(Directory::Check(m.span(), "p", "bus1").ok());
}

TEST(Directory, BadMagicGeometryOrBusNameIsCorruption) {
  DirectoryMemory m;
  Directory::Format(m.span(), "bus1", 0600);
  EXPECT_EQ(Directory::Check(m.span(), "p", "other").code(), StatusCode::kCorruption);
  EXPECT_EQ(Directory::Check(m.span().first(100), "p", "bus1").code(), StatusCode::kCorruption);
  uint32_t topics = 5;
  std::memcpy(m.data() + offsetof(DirectoryHeader, topic_capacity), &topics, sizeof topics);
  EXPECT_EQ(Directory::Check(m.span(), "p", "bus1").code(), StatusCode::kCorruption);
  m.data()[0] = std::byte{'X'};
  EXPECT_EQ(Directory::Check(m.span(), "p", "bus1").code(), StatusCode::kCorruption);
}

TEST(Directory, TopicRoundTripAndLiveness) {
  DirectoryMemory m;
  Directory::Format(m.span(), "b", 0600);
  Directory d(m.data());
  TopicRecord t;
  t.slot = *d.FreeTopicSlot();
  t.generation = d.NextGeneration();
  t.state = TopicState::kLive;
  t.name = "orders.v2";
  t.partitions = 8;
  t.ring_capacity = 1 << 20;
  t.max_record_bytes = 1000;
  t.flags = kTopicFlagDurable;
  t.segment_bytes = 1 << 26;
  t.retention_ms = 5000;
  t.fsync_kind = 1;
  t.fsync_interval_ms = 10;
  d.WriteTopic(t);
  std::optional<TopicRecord> r = d.FindLiveTopic("orders.v2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->name, "orders.v2");
  EXPECT_EQ(r->partitions, 8u);
  EXPECT_EQ(r->retention_ms, 5000u);
  EXPECT_TRUE(d.IsLive(t.slot, t.generation));
  EXPECT_FALSE(d.IsLive(t.slot, t.generation + 1));
  d.ClearTopic(t.slot);
  EXPECT_FALSE(d.IsLive(t.slot, t.generation));
  EXPECT_FALSE(d.FindLiveTopic("orders.v2"));
  EXPECT_GT(d.NextGeneration(), t.generation);  // never reused
}

TEST(Directory, NonsensicalTopicEntriesAreIgnored) {
  DirectoryMemory m;
  Directory::Format(m.span(), "b", 0600);
  Directory d(m.data());
  TopicRecord t;
  t.state = TopicState::kLive;
  t.generation = 1;
  t.ring_capacity = 1 << 16;
  t.partitions = 1;
  t.name = "ok";
  d.WriteTopic(t);
  t.slot = 1;
  t.name = "too-many";
  t.partitions = 1000;  // would index past 64-entry arrays
  d.WriteTopic(t);
  t.slot = 2;
  t.name = "../escape";
  t.partitions = 1;
  d.WriteTopic(t);
  t.slot = 3;
  t.name = "odd-ring";
  t.ring_capacity = 12345;
  d.WriteTopic(t);
  const std::vector<TopicRecord> live = d.LiveTopics();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].name, "ok");
  EXPECT_FALSE(d.FindLiveTopic("too-many"));
  EXPECT_FALSE(d.FindLiveTopic("../escape"));
}

TEST(Directory, SeqlockReadersNeverSeeAHalfWrittenEntry) {
  DirectoryMemory m;
  Directory::Format(m.span(), "b", 0600);
  Directory d(m.data());
  auto record = [](uint32_t i) {
    TopicRecord t;
    t.slot = 0;
    t.state = TopicState::kLive;
    t.generation = i;
    t.partitions = i % 64 + 1;
    t.ring_capacity = uint64_t{i} * 3;
    t.segment_bytes = uint64_t{i} * 5;
    t.name = "topic-" + std::to_string(i);
    return t;
  };
  d.WriteTopic(record(1));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint32_t i = 2; !stop.load(std::memory_order_relaxed); ++i) d.WriteTopic(record(i));
  });
  int checked = 0;
  for (int n = 0; n < 100000; ++n) {
    std::optional<TopicRecord> t = d.ReadTopic(0);
    if (!t) continue;
    const uint32_t i = static_cast<uint32_t>(t->generation);
    ASSERT_EQ(t->partitions, i % 64 + 1);
    ASSERT_EQ(t->ring_capacity, uint64_t{i} * 3);
    ASSERT_EQ(t->segment_bytes, uint64_t{i} * 5);
    ASSERT_EQ(t->name, "topic-" + std::to_string(i));
    ++checked;
  }
  stop.store(true, std::memory_order_relaxed);
  writer.join();
  EXPECT_GT(checked, 0);
}

TEST(Directory, ClientRegistrationRoundTrip) {
  DirectoryMemory m;
  Directory::Format(m.span(), "b", 0600);
  Directory d(m.data());
  ClientRecord c;
  c.slot = *d.FreeClientSlot();
  c.role = ClientRole::kConsumer;
  c.client_id = d.NextClientId();
  c.pid = 1234;
  c.start_time = 99;
  c.partition_mask = 0b101;
  c.group = "g1";
  d.WriteClient(c);
  d.StorePosition(c.slot, 2, 77);
  ASSERT_EQ(d.LiveClients().size(), 1u);
  const ClientRecord r = d.LiveClients()[0];
  EXPECT_EQ(r.pid, 1234);
  EXPECT_EQ(r.group, "g1");
  EXPECT_EQ(r.positions[2], 77u);
  EXPECT_TRUE(d.ClientIs(c.slot, c.client_id));
  d.ClearClient(c.slot);
  EXPECT_FALSE(d.ClientIs(c.slot, c.client_id));
  EXPECT_TRUE(d.LiveClients().empty());
}

}  // namespace
}  // namespace runnel::internal
