// The durable bus: producers, the broker's persistence thread, consumers that
// read old offsets from disk and rejoin the ring, broker crashes and restarts.

#include "ipc/durability.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "ipc/broker.h"
#include "ipc/bus.h"
#include "persistence/reader.h"
#include "tests/ipc/test_util.h"

namespace runnel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::ScopedBusName;

class DurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("runnel-dur-" + std::to_string(getpid()) + "-" + std::to_string(counter_++)))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  BusOptions Options(bool embedded = false) const {
    BusOptions o;
    o.data_dir = dir_;
    o.embedded_broker = embedded;
    return o;
  }
  static TopicOptions Topic(uint32_t partitions = 1) {
    TopicOptions t;
    t.partitions = partitions;
    t.ring_bytes = 64 * 1024;  // small: records leave the ring quickly
    t.segment_bytes = 256 * 1024;
    return t;
  }

  std::string dir_;
  static inline int counter_ = 0;
};

std::string Value(uint64_t i) {
  std::string v = "value-" + std::to_string(i) + "-";
  v.resize(60 + i % 200, static_cast<char>('a' + i % 26));
  return v;
}

// Reads a consumer until `n` records arrived or 10 s passed.
std::vector<std::pair<uint64_t, std::string>> Drain(Consumer& c, size_t n,
                                                    PollStatus* status = nullptr) {
  std::vector<std::pair<uint64_t, std::string>> got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
    const PollResult r = c.PollFor(
        [&](const ConsumerRecord& rec) {
          got.emplace_back(rec.offset(), std::string(rec.value()));
        },
        256, 50ms);
    if (status != nullptr && r.status != PollStatus::kOk) *status = r.status;
  }
  return got;
}

TEST_F(DurabilityTest, ConsumerFromEarliestReadsTheDiskThenJoinsTheRing) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  Result<Producer> p = bus->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  constexpr uint64_t kRecords = 5000;  // ~0.8 MB through a 64 KiB ring
  uint64_t last = 0;
  for (uint64_t i = 0; i < kRecords; ++i) {
    SendResult r = p->Send(std::nullopt, Value(i), {}, 0, 10s);
    ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
    last = r.offset;
  }
  ASSERT_TRUE(p->WaitDurable(0, last, 10s).ok());
  Result<TopicInfo> info = bus->DescribeTopic("t");
  ASSERT_TRUE(info.ok());
  EXPECT_GT(info->partitions[0].earliest_offset, 0u);  // the ring no longer has the start
  EXPECT_EQ(info->partitions[0].durable_offset, kRecords);
  EXPECT_EQ(info->partitions[0].persist_error, 0);

  Result<Consumer> c = bus->CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  PollStatus bad = PollStatus::kOk;
  auto got = Drain(*c, kRecords, &bad);
  EXPECT_EQ(bad, PollStatus::kOk);
  ASSERT_EQ(got.size(), kRecords);
  for (uint64_t i = 0; i < kRecords; ++i) {
    ASSERT_EQ(got[i].first, i);
    ASSERT_EQ(got[i].second, Value(i));
  }
  // And it keeps following the live ring.
  ASSERT_TRUE(p->Send(std::nullopt, "live", {}, 0, 1s).ok());
  got = Drain(*c, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, kRecords);
  EXPECT_EQ(got[0].second, "live");
}

TEST_F(DurabilityTest, ConsumerStartsAtATimestamp) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  Result<Producer> p = bus->CreateProducer("t");
  uint64_t last = 0;
  for (uint64_t i = 0; i < 3000; ++i) {
    ProducerClaim claim = p->TryClaim(0, 0, 0, 8, false);
    while (claim.status() == SendStatus::kFull) {
      std::this_thread::sleep_for(1ms);
      claim = p->TryClaim(0, 0, 0, 8, false);
    }
    ASSERT_TRUE(claim.ok());
    std::memcpy(claim.value().data(), &i, 8);
    claim.set_timestamp(static_cast<int64_t>(1'000'000'000 + i * 1000));
    last = claim.offset();
    ASSERT_EQ(p->Commit(claim), SendStatus::kOk);
  }
  ASSERT_TRUE(p->WaitDurable(0, last, 10s).ok());
  for (uint64_t want : {0ull, 17ull, 1500ull, 2999ull}) {
    ConsumerOptions co;
    co.start = StartPosition::Timestamp(static_cast<int64_t>(1'000'000'000 + want * 1000) - 1);
    Result<Consumer> c = bus->CreateConsumer("t", co);
    ASSERT_TRUE(c.ok());
    auto got = Drain(*c, 1);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got[0].first, want);
  }
}

TEST_F(DurabilityTest, TopicsComeBackFromDiskAfterTheSharedMemoryIsGone) {
  ScopedBusName name;
  {
    Result<Bus> bus = Bus::Open(*name, Options(true));
    ASSERT_TRUE(bus.ok());
    ASSERT_TRUE(bus->CreateTopic("t", Topic(2)).ok());
    Result<Producer> p = bus->CreateProducer("t");
    for (uint64_t i = 0; i < 400; ++i) {
      SendResult r = p->Send(std::nullopt, Value(i), {}, static_cast<uint32_t>(i % 2), 10s);
      ASSERT_TRUE(r.ok());
      ASSERT_TRUE(p->WaitDurable(r.partition, r.offset, 10s).ok());
    }
  }
  // A reboot: every process and the shared memory are gone; the disk stays.
  ASSERT_TRUE(Bus::Remove(*name).ok());
  Result<Bus> bus = Bus::Open(*name, Options(true));
  ASSERT_TRUE(bus.ok());
  // The broker restores the topic from the data dir.
  Result<TopicInfo> info = bus->DescribeTopic("t");
  for (int i = 0; i < 200 && !info.ok(); ++i) {
    std::this_thread::sleep_for(10ms);
    info = bus->DescribeTopic("t");
  }
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  ASSERT_EQ(info->partitions.size(), 2u);
  EXPECT_EQ(info->partitions[0].next_offset, 200u);  // continues, never reuses an offset
  EXPECT_EQ(info->partitions[1].next_offset, 200u);
  Result<Producer> p = bus->CreateProducer("t");
  SendResult r = p->Send(std::nullopt, "after", {}, 0, 10s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.offset, 200u);
  ConsumerOptions co;
  co.partitions = {0};
  Result<Consumer> c = bus->CreateConsumer("t", co);
  auto got = Drain(*c, 201);
  ASSERT_EQ(got.size(), 201u);
  for (uint64_t i = 0; i < 200; ++i) EXPECT_EQ(got[i].second, Value(i * 2));
  EXPECT_EQ(got[200].second, "after");
}

TEST_F(DurabilityTest, WithoutABrokerProducersGetBackPressureNotLoss) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(false));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  Result<Producer> p = bus->CreateProducer("t");
  uint64_t sent = 0;
  SendResult r;
  while ((r = p->TrySend(std::nullopt, Value(sent))).ok()) ++sent;
  EXPECT_EQ(r.status, SendStatus::kFull);
  EXPECT_GT(sent, 100u);
  EXPECT_EQ(p->WaitDurable(0, 0, 10ms).code(), StatusCode::kTimeout);
  // A broker comes: everything is persisted and the producer continues.
  Broker broker(*bus);
  DurabilityOptions d;
  d.data_dir = dir_;
  broker.AddHooks(MakeDurabilityHooks(d));
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  ASSERT_TRUE(p->WaitDurable(0, sent - 1, 10s).ok());
  EXPECT_TRUE(p->Send(std::nullopt, Value(sent), {}, 0, 10s).ok());
  broker.Stop();
  ConsumerOptions co;
  Result<Consumer> c = bus->CreateConsumer("t", co);
  auto got = Drain(*c, sent + 1);
  ASSERT_EQ(got.size(), sent + 1);
  for (uint64_t i = 0; i <= sent; ++i) ASSERT_EQ(got[i].second, Value(i));
}

TEST_F(DurabilityTest, NonDurableBusReportsWaitDurableUnavailable) {
  ScopedBusName name;
  BusOptions o;  // no data dir
  Result<Bus> bus = Bus::Open(*name, o);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  Result<Producer> p = bus->CreateProducer("t");
  SendResult r = p->TrySend(std::nullopt, "x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(p->WaitDurable(0, r.offset, 10ms).code(), StatusCode::kUnavailable);
}

// A broker process killed with SIGKILL at random moments, many times, while
// an at-least-once producer keeps sending: every acknowledged record is on
// disk exactly once, in order, with its bytes.
TEST_F(DurabilityTest, BrokerKilledAtRandomLosesNoAcknowledgedRecord) {
  ScopedBusName name;
  {
    Result<Bus> bus = Bus::Open(*name, Options(false));
    ASSERT_TRUE(bus.ok());
    TopicOptions t = Topic();
    t.fsync = FsyncPolicy::kAlways;
    ASSERT_TRUE(bus->CreateTopic("t", t).ok());
  }
  auto start_broker = [&]() -> pid_t {
    const pid_t pid = fork();
    if (pid == 0) {
      Result<Bus> bus = Bus::Open(*name, Options(false));
      if (!bus.ok()) _exit(2);
      Broker broker(*bus);
      DurabilityOptions d;
      d.data_dir = dir_;
      broker.AddHooks(MakeDurabilityHooks(d));
      if (!broker.Start(BrokerMode::kStandby).ok()) _exit(3);
      for (;;) pause();
    }
    return pid;
  };
  // The producer runs in its own process too, acknowledging in a pipe.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t producer = fork();
  if (producer == 0) {
    close(fds[0]);
    Result<Bus> bus = Bus::Open(*name, Options(false));
    Result<Producer> p = bus->CreateProducer("t");
    if (!p.ok()) _exit(2);
    for (uint64_t i = 0;; ++i) {
      SendResult r = p->Send(std::nullopt, Value(i), {}, 0, 30s);
      if (!r.ok()) _exit(3);
      // At-least-once: wait for durability, retry on timeout.
      while (!p->WaitDurable(0, r.offset, 2s).ok()) {
      }
      uint64_t acked[2] = {i, r.offset};
      if (write(fds[1], acked, sizeof acked) != sizeof acked) _exit(4);
    }
  }
  close(fds[1]);
  uint64_t seed = static_cast<uint64_t>(getpid());
  for (int round = 0; round < 15; ++round) {
    const pid_t broker = start_broker();
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + (seed >> 33) % 120));
    kill(broker, SIGKILL);
    int status = 0;
    waitpid(broker, &status, 0);
  }
  // Let a last broker catch up, then stop the producer.
  const pid_t broker = start_broker();
  std::this_thread::sleep_for(200ms);
  kill(producer, SIGKILL);
  waitpid(producer, nullptr, 0);
  std::map<uint64_t, uint64_t> acked;  // offset -> record number
  uint64_t pair[2];
  while (read(fds[0], pair, sizeof pair) == sizeof pair) acked[pair[1]] = pair[0];
  close(fds[0]);
  kill(broker, SIGTERM);
  kill(broker, SIGKILL);
  waitpid(broker, nullptr, 0);
  ASSERT_GT(acked.size(), 10u);
  // Read the log at rest, with no bus or broker.
  LogReaderOptions ro;
  ro.follow = false;
  Result<LogReader> reader = LogReader::Open(dir_ + "/t/0", ro);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  std::vector<std::pair<uint64_t, std::string>> disk;
  for (;;) {
    LogEntry e = reader->Next();
    if (e.kind == LogEntry::Kind::kEnd) break;
    ASSERT_NE(e.kind, LogEntry::Kind::kDamage) << e.damage->reason;
    disk.emplace_back(e.record.offset(), std::string(e.record.value()));
  }
  for (size_t i = 0; i < disk.size(); ++i) {
    ASSERT_EQ(disk[i].first, i) << "offsets on disk are dense and in order";
    ASSERT_EQ(disk[i].second, Value(i));  // the producer never retried a send
  }
  for (const auto& [offset, number] : acked) {
    ASSERT_LT(offset, disk.size()) << "acknowledged record " << number << " is not on disk";
    EXPECT_EQ(disk[offset].second, Value(number));
  }
}

}  // namespace
}  // namespace runnel
