// The durable bus: producers, the broker's persistence thread, consumers that
// read old offsets from disk and rejoin the ring, broker crashes and restarts.

#include "ipc/durability.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "core/log.h"
#include "ipc/broker.h"
#include "ipc/bus.h"
#include "ipc/internal/bus_core.h"
#include "ipc/internal/directory.h"
#include "ipc/internal/log_cold_reader.h"
#include "ipc/internal/names.h"
#include "ipc/internal/shm.h"
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

  // The broker persists into this test's data dir (with `runnel broker
  // --repair`'s repair when asked).
  void AddDurability(Broker& broker, bool repair = false) const {
    DurabilityOptions d;
    d.data_dir = dir_;
    d.repair = repair;
    broker.AddHooks(MakeDurabilityHooks(d));
  }

  // A bus with an embedded broker persisting into this test's data dir, a
  // topic (Topic()) on it and a producer of that topic.
  struct Persisting {
    Bus bus;
    Producer producer;
  };
  std::optional<Persisting> OpenPersisting(const std::string& bus_name,
                                           const std::string& topic = "t") const {
    Result<Bus> bus = Bus::Open(bus_name, Options(/*embedded=*/true));
    EXPECT_TRUE(bus.ok()) << bus.status().ToString();
    if (!bus.ok() || !bus->embedded_broker()->WaitReady(10s).ok()) return std::nullopt;
    const Status created = bus->CreateTopic(topic, Topic());
    EXPECT_TRUE(created.ok()) << created.ToString();
    if (!created.ok()) return std::nullopt;
    Result<Producer> p = bus->CreateProducer(topic);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return std::nullopt;
    return Persisting{std::move(*bus), std::move(*p)};
  }

  std::string dir_;
  static inline int counter_ = 0;
};

TopicOptions DurabilityTestTopic() {
  TopicOptions t;
  t.ring_bytes = 64 * 1024;
  t.segment_bytes = 256 * 1024;
  return t;
}

std::string Value(uint64_t i) {
  std::string v = "value-" + std::to_string(i) + "-";
  v.resize(60 + i % 200, static_cast<char>('a' + i % 26));
  return v;
}

// Sends Value(0), Value(1), ... to partition 0 until it is full (no broker
// persists it, so nothing frees space); returns how many went in.
uint64_t SendUntilFull(Producer& p) {
  uint64_t sent = 0;
  SendResult r;
  while ((r = p.TrySend(std::nullopt, Value(sent), {}, 0)).ok()) ++sent;
  EXPECT_EQ(r.status, SendStatus::kFull);
  return sent;
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

// Reads `c` and expects exactly Value(0) .. Value(n - 1), in offset order,
// with no loss or problem reported.
void ExpectValuesFromZero(Consumer& c, uint64_t n) {
  PollStatus bad = PollStatus::kOk;
  const auto got = Drain(c, n, &bad);
  EXPECT_EQ(bad, PollStatus::kOk);
  ASSERT_EQ(got.size(), n);
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_EQ(got[i].first, i);
    ASSERT_EQ(got[i].second, Value(i));
  }
}

TEST_F(DurabilityTest, ConsumerFromEarliestReadsTheDiskThenJoinsTheRing) {
  ScopedBusName name;
  std::optional<Persisting> opened = OpenPersisting(*name);
  ASSERT_TRUE(opened.has_value());
  Bus* bus = &opened->bus;
  Producer* p = &opened->producer;
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
  ExpectValuesFromZero(*c, kRecords);
  if (HasFatalFailure()) return;
  // And it keeps following the live ring.
  ASSERT_TRUE(p->Send(std::nullopt, "live", {}, 0, 1s).ok());
  const auto got = Drain(*c, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, kRecords);
  EXPECT_EQ(got[0].second, "live");
}

// How many of this process's file descriptors are open on segment files
// (*.log) under `dir`.
int OpenSegmentFds(const std::string& dir) {
  int n = 0;
  for (const fs::directory_entry& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(e.path(), ec).string();
    if (!ec && target.starts_with(dir + "/") && target.ends_with(".log")) ++n;
  }
  return n;
}

// How many of this process's file descriptors are open on segment files
// under `dir` that were deleted.
int DeletedSegmentFds(const std::string& dir) {
  int n = 0;
  for (const fs::directory_entry& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(e.path(), ec).string();
    if (!ec && target.starts_with(dir + "/") && target.ends_with(".log (deleted)")) ++n;
  }
  return n;
}

// What a consumer read from disk is closed when it is back on the ring or
// destroyed (it stayed open for the life of the Bus, and with it segments
// retention or a topic delete had removed, with their disk space).
TEST_F(DurabilityTest, AConsumerBackOnTheRingOrGoneKeepsNoSegmentOpen) {
  ScopedBusName name;
  std::optional<Persisting> opened = OpenPersisting(*name);
  ASSERT_TRUE(opened.has_value());
  constexpr uint64_t kRecords = 5000;  // ~0.8 MB through a 64 KiB ring
  uint64_t last = 0;
  for (uint64_t i = 0; i < kRecords; ++i) {
    SendResult r = opened->producer.Send(std::nullopt, Value(i), {}, 0, 10s);
    ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
    last = r.offset;
  }
  ASSERT_TRUE(opened->producer.WaitDurable(0, last, 10s).ok());
  const int persister_fds = OpenSegmentFds(dir_);  // the broker's active segment
  {
    Result<Consumer> c = opened->bus.CreateConsumer("t");
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(Drain(*c, 1).size(), 256u);  // one batch: still reading the disk
    EXPECT_EQ(OpenSegmentFds(dir_), persister_fds + 1);
  }
  EXPECT_EQ(OpenSegmentFds(dir_), persister_fds);
  Result<Consumer> c = opened->bus.CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  ExpectValuesFromZero(*c, kRecords);
  ASSERT_TRUE(opened->producer.Send(std::nullopt, "live", {}, 0, 1s).ok());
  ASSERT_EQ(Drain(*c, 1).size(), 1u);  // from the ring
  EXPECT_EQ(OpenSegmentFds(dir_), persister_fds);
}

// A handler of a consumer reading the disk may destroy another consumer
// that reads the disk too (it deadlocked: the bus's disk reader was locked
// across the handler, and the destroyed consumer closes its log there).
TEST_F(DurabilityTest, AHandlerReadingTheDiskMayDestroyAnotherConsumerReadingIt) {
  ScopedBusName name;
  std::optional<Persisting> opened = OpenPersisting(*name);
  ASSERT_TRUE(opened.has_value());
  constexpr uint64_t kRecords = 5000;  // ~0.8 MB through a 64 KiB ring
  uint64_t last = 0;
  for (uint64_t i = 0; i < kRecords; ++i) {
    SendResult r = opened->producer.Send(std::nullopt, Value(i), {}, 0, 10s);
    ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
    last = r.offset;
  }
  ASSERT_TRUE(opened->producer.WaitDurable(0, last, 10s).ok());
  const int persister_fds = OpenSegmentFds(dir_);
  Result<Consumer> a = opened->bus.CreateConsumer("t");
  ASSERT_TRUE(a.ok());
  Result<Consumer> b_made = opened->bus.CreateConsumer("t");
  ASSERT_TRUE(b_made.ok());
  std::optional<Consumer> b(std::move(*b_made));
  ASSERT_EQ(Drain(*b, 1).size(), 256u);  // one batch: b keeps its log open
  ASSERT_EQ(OpenSegmentFds(dir_), persister_fds + 1);

  std::promise<std::vector<uint64_t>> done;
  std::future<std::vector<uint64_t>> result = done.get_future();
  std::thread poller([&] {
    std::vector<uint64_t> offsets;
    (void)a->Poll(
        [&](const ConsumerRecord& rec) {
          b.reset();
          offsets.push_back(rec.offset());
        },
        256);
    done.set_value(std::move(offsets));
  });
  if (result.wait_for(20s) != std::future_status::ready) {
    std::fprintf(stderr, "the poll did not return: deadlocked\n");
    std::abort();  // the poller cannot be joined
  }
  poller.join();
  const std::vector<uint64_t> offsets = result.get();
  ASSERT_EQ(offsets.size(), 256u);
  for (uint64_t i = 0; i < offsets.size(); ++i) EXPECT_EQ(offsets[i], i);
  EXPECT_FALSE(b.has_value());
  EXPECT_EQ(OpenSegmentFds(dir_), persister_fds + 1);  // a's alone
}

// A consumer reading a topic's log from disk when the topic is deleted (and
// created anew, with records of its own) gets kTopicDeleted: never a record
// of the new topic (its log was found by the name), nor a loss for the old
// log's files going away; it closes those files when it says so.
TEST_F(DurabilityTest, AConsumerOnDiskOfADeletedTopicGetsTopicDeletedNotTheNewTopicsRecords) {
  ScopedBusName name;
  std::optional<Persisting> opened = OpenPersisting(*name);
  ASSERT_TRUE(opened.has_value());
  constexpr uint64_t kRecords = 5000;  // ~0.8 MB through a 64 KiB ring
  uint64_t last = 0;
  for (uint64_t i = 0; i < kRecords; ++i) {
    SendResult r = opened->producer.Send(std::nullopt, Value(i), {}, 0, 10s);
    ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
    last = r.offset;
  }
  ASSERT_TRUE(opened->producer.WaitDurable(0, last, 10s).ok());
  ConsumerOptions co;
  std::vector<OverrunInfo> losses;
  co.on_overrun = [&](const OverrunInfo& o) { losses.push_back(o); };
  Result<Consumer> c = opened->bus.CreateConsumer("t", co);
  ASSERT_TRUE(c.ok());
  std::vector<std::pair<uint64_t, std::string>> got = Drain(*c, 1);  // one batch, from disk
  ASSERT_FALSE(got.empty());

  ASSERT_TRUE(opened->bus.DeleteTopic("t").ok());
  ASSERT_TRUE(opened->bus.CreateTopic("t", Topic()).ok());
  Result<Producer> p = opened->bus.CreateProducer("t");
  ASSERT_TRUE(p.ok());
  for (uint64_t i = 0; i < kRecords; ++i) {
    SendResult r = p->Send(std::nullopt, "new", {}, 0, 10s);
    ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
    last = r.offset;
  }
  ASSERT_TRUE(p->WaitDurable(0, last, 10s).ok());

  PollStatus status = PollStatus::kOk;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (status != PollStatus::kTopicDeleted && std::chrono::steady_clock::now() < deadline) {
    status = c->Poll(
                  [&](const ConsumerRecord& rec) {
                    got.emplace_back(rec.offset(), std::string(rec.value()));
                  },
                  256)
                 .status;
  }
  EXPECT_EQ(status, PollStatus::kTopicDeleted);
  EXPECT_EQ(DeletedSegmentFds(dir_), 0);  // the old log's, closed when it says so
  for (const auto& [offset, value] : got) ASSERT_EQ(value, Value(offset)) << "offset " << offset;
  EXPECT_TRUE(losses.empty()) << losses.size() << " losses, the first of "
                              << losses.front().lost_records << " records";
}

// A log that is there but cannot be read (here: a file where the partition
// directory belongs; as another user, permissions): a start on disk is an
// error naming it, and records a consumer then cannot read are reported as
// unreadable, with the error. The start used to fall back to the ring, and
// the loss to read as "fell behind the ring", without a word of the cause.
TEST_F(DurabilityTest, ALogThatCannotBeReadIsAnErrorOrAnUnreadableLossNotASilentSkip) {
  ScopedBusName name;
  {
    std::optional<Persisting> opened = OpenPersisting(*name);
    ASSERT_TRUE(opened.has_value());
    uint64_t last = 0;
    for (uint64_t i = 0; i < 5000; ++i) {  // ~0.8 MB through a 64 KiB ring
      SendResult r = opened->producer.Send(std::nullopt, Value(i), {}, 0, 10s);
      ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
      last = r.offset;
    }
    ASSERT_TRUE(opened->producer.WaitDurable(0, last, 10s).ok());
  }  // the broker stops
  Result<Bus> bus = Bus::Open(*name, Options());
  ASSERT_TRUE(bus.ok());
  std::vector<OverrunInfo> losses;
  ConsumerOptions co;
  co.on_overrun = [&](const OverrunInfo& o) { losses.push_back(o); };
  Result<Consumer> before = bus->CreateConsumer("t", co);  // the log is readable still
  ASSERT_TRUE(before.ok());

  const std::string partition = dir_ + "/t/0";
  fs::rename(partition, partition + ".aside");
  std::ofstream(partition) << "not a directory";
  Result<Consumer> refused = bus->CreateConsumer("t");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find(
                "cannot read the log of topic 't' partition 0 to find where to start: "),
            std::string::npos)
      << refused.status().message();

  Drain(*before, 1);
  ASSERT_FALSE(losses.empty());
  EXPECT_EQ(losses[0].cause, LossCause::kUnreadable);
  EXPECT_EQ(losses[0].from_offset, 0u);
  EXPECT_NE(losses[0].error.find(partition), std::string::npos) << losses[0].error;
}

// An aborted claim whose frame ends exactly at the end of a ring lap looks
// like wrap padding. The persister used to skip it, so the log held no
// padding before the jump in offsets, and every reader of the log took the
// next record (durable, acknowledged) for damage and skipped it.
TEST_F(DurabilityTest, AnAbortedClaimEndingAtTheLapEndLosesNoRecordOnDisk) {
  ScopedBusName name;
  std::optional<Persisting> opened = OpenPersisting(*name);
  ASSERT_TRUE(opened.has_value());
  Bus* bus = &opened->bus;
  Producer* p = &opened->producer;
  const uint64_t lap = Topic().ring_bytes;
  auto tail = [&] { return bus->DescribeTopic("t")->partitions[0].tail_position; };
  std::map<uint64_t, std::string> sent;
  auto send = [&](const std::string& v) {
    SendResult r = p->Send(std::nullopt, v, {}, 0, 10s);
    EXPECT_TRUE(r.ok()) << SendStatusName(r.status);
    sent[r.offset] = v;
    return r.offset;
  };
  for (int i = 0; tail() % lap < lap - 4000; ++i) send("filler " + std::to_string(i));
  const uint64_t room = lap - tail() % lap;
  ProducerClaim claim =
      p->TryClaim(0, 0, 0, static_cast<uint32_t>(room - kFrameHeaderLength), false);
  ASSERT_TRUE(claim.ok());
  ASSERT_EQ(tail() % lap, 0u);  // the claim ends exactly at the lap's end
  ASSERT_EQ(p->Abort(claim), SendStatus::kOk);
  uint64_t last = send("the record after the aborted claim");
  for (int i = 0; i < 200; ++i) last = send("more " + std::to_string(i) + std::string(900, '.'));
  ASSERT_TRUE(p->WaitDurable(0, last, 10s).ok());

  Result<Consumer> c = bus->CreateConsumer("t", {.start = StartPosition::Offset(0)});
  ASSERT_TRUE(c.ok());
  const auto got = Drain(*c, sent.size());
  ASSERT_EQ(got.size(), sent.size());
  auto it = sent.begin();
  for (const auto& [offset, value] : got) {
    EXPECT_EQ(offset, it->first);
    EXPECT_EQ(value, it->second);
    ++it;
  }
  Result<VerifyReport> report = VerifyLog(dir_ + "/t/0");
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->ok()) << report->damages.size() << " damages";
  EXPECT_EQ(report->records, sent.size());
}

TEST_F(DurabilityTest, ProcessesGivenNoDataDirUseTheOneTheBrokerRecorded) {
  ScopedBusName name;
  BusOptions other;
  other.data_dir = dir_ + "-other";
  {
    std::optional<Persisting> opened = OpenPersisting(*name);
    ASSERT_TRUE(opened.has_value());
    Bus* bus = &opened->bus;
    Producer* p = &opened->producer;
    constexpr uint64_t kRecords = 3000;  // far more than the 64 KiB ring holds
    uint64_t last = 0;
    for (uint64_t i = 0; i < kRecords; ++i) {
      SendResult r = p->Send(std::nullopt, Value(i), {}, 0, 10s);
      ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
      last = r.offset;
    }
    ASSERT_TRUE(p->WaitDurable(0, last, 10s).ok());
    Result<BusInfo> info = bus->Info();
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->broker_data_dir, dir_);

    // No data dir given: it reads the broker's log, from offset 0.
    Result<Bus> plain = Bus::Open(*name, {});
    ASSERT_TRUE(plain.ok()) << plain.status().ToString();
    EXPECT_EQ(plain->data_dir(), dir_);
    Result<Consumer> c = plain->CreateConsumer("t");
    ASSERT_TRUE(c.ok());
    ExpectValuesFromZero(*c, kRecords);

    // Another data dir while that broker runs: refused, naming both.
    Result<Bus> wrong = Bus::Open(*name, other);
    ASSERT_FALSE(wrong.ok());
    EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(wrong.status().message().find("keeps its data in " + dir_ + ","), std::string::npos)
        << wrong.status().message();
    // The same one with a trailing slash is the same.
    BusOptions same;
    same.data_dir = dir_ + "/";
    EXPECT_TRUE(Bus::Open(*name, same).ok());
  }  // the embedded broker stops

  // Once the broker has stopped, the record stays, and a given one wins.
  Result<Bus> after = Bus::Open(*name, {});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->data_dir(), dir_);
  Result<Bus> given = Bus::Open(*name, other);
  ASSERT_TRUE(given.ok()) << given.status().ToString();
  EXPECT_EQ(given->data_dir(), dir_ + "-other");
}

// Records 0..n-1 to partition 0 of `topic`, record i stamped 1 s + i us
// (its value is i), all durable.
void ProduceStamped(Bus& bus, const std::string& topic, uint64_t n) {
  Result<Producer> p = bus.CreateProducer(topic);
  ASSERT_TRUE(p.ok());
  uint64_t last = 0;
  for (uint64_t i = 0; i < n; ++i) {
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
}

TEST_F(DurabilityTest, ConsumerStartsAtATimestamp) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  ProduceStamped(*bus, "t", 3000);
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

// Retention removed records from disk that the (larger) ring still holds:
// a start at a timestamp finds the first record stamped at or after it
// that is still kept, in the ring, like a start at the earliest; it used to
// start at the oldest record left on disk, skipping those in the ring.
// Topic() with 4 KiB segments and 8 KiB retention: the ring holds more.
TopicOptions RetainedLessThanTheRing() {
  TopicOptions o;
  o.ring_bytes = 64 * 1024;
  o.segment_bytes = 4096;
  o.retention_bytes = 8192;
  return o;
}

// Retention runs on the broker's time: waits until the log of `topic`
// partition 0 in `dir` starts past the ring's oldest record; returns that
// record's offset.
void WaitUntilTheLogStartsPastTheRing(Bus& bus, const std::string& dir, uint64_t* ring_earliest) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    Result<TopicInfo> info = bus.DescribeTopic("t");
    ASSERT_TRUE(info.ok());
    *ring_earliest = info->partitions[0].earliest_offset;
    Result<LogReader> log = LogReader::Open(dir + "/t/0");
    ASSERT_TRUE(log.ok());
    if (log->log_start_offset() > *ring_earliest + 100) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << "log starts at " << log->log_start_offset() << ", ring at " << *ring_earliest;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GT(*ring_earliest, 0u);
}

TEST_F(DurabilityTest, AStartAtATimestampFindsRecordsOnlyTheRingStillHolds) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", RetainedLessThanTheRing()).ok());
  ProduceStamped(*bus, "t", 2000);
  uint64_t ring_earliest = 0;
  WaitUntilTheLogStartsPastTheRing(*bus, dir_, &ring_earliest);
  if (HasFatalFailure()) return;
  for (uint64_t want : {uint64_t{0}, ring_earliest, ring_earliest + 50}) {
    ConsumerOptions co;
    co.start = StartPosition::Timestamp(static_cast<int64_t>(1'000'000'000 + want * 1000) - 1);
    Result<Consumer> c = bus->CreateConsumer("t", co);
    ASSERT_TRUE(c.ok());
    auto got = Drain(*c, 1);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got[0].first, std::max(want, ring_earliest)) << "from " << want;
  }
}

// A start at the earliest record after retention moved the log's start: no
// loss is reported (an earlier consumer of the process had listed the log
// before, and that stale listing was its start: a false retention loss).
TEST_F(DurabilityTest, AnEarliestStartAfterRetentionReportsNoLoss) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", RetainedLessThanTheRing()).ok());
  ProduceStamped(*bus, "t", 10);
  Result<Consumer> first = bus->CreateConsumer("t");  // lists the log at its start
  ASSERT_TRUE(first.ok());
  ProduceStamped(*bus, "t", 2000);
  uint64_t ring_earliest = 0;
  WaitUntilTheLogStartsPastTheRing(*bus, dir_, &ring_earliest);
  if (HasFatalFailure()) return;
  Result<Consumer> c = bus->CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  PollStatus status = PollStatus::kOk;
  auto got = Drain(*c, 1, &status);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].first, ring_earliest);
  EXPECT_EQ(status, PollStatus::kOk);
  EXPECT_EQ(c->lost_records(), 0u);
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
  std::mutex log_mu;
  std::vector<std::pair<LogLevel, std::string>> log;
  SetLogSink([&](LogLevel level, std::string_view line) {
    std::lock_guard<std::mutex> lock(log_mu);
    log.emplace_back(level, std::string(line));
  });
  Result<Bus> bus = Bus::Open(*name, Options(true));
  ASSERT_TRUE(bus.ok());
  // The broker restores the topic from the data dir before it is ready.
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  SetLogSink(nullptr);
  {
    // ...and says so through the program's log sink.
    std::lock_guard<std::mutex> lock(log_mu);
    const std::pair<LogLevel, std::string> restored{LogLevel::kInfo,
                                                    "runnel broker: restored topic t from " + dir_};
    EXPECT_NE(std::find(log.begin(), log.end(), restored), log.end())
        << (log.empty() ? "nothing logged" : log.front().second);
  }
  Result<TopicInfo> info = bus->DescribeTopic("t");
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

// Without a broker nothing is persisted, so a durable topic's ring fills
// and producers get back-pressure. Send with the largest timeout (no
// deadline) waits, however long; when a broker comes, everything is
// persisted and the producer continues.
TEST_F(DurabilityTest, WithoutABrokerProducersGetBackPressureNotLoss) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(false));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  Result<Producer> p = bus->CreateProducer("t");
  const uint64_t sent = SendUntilFull(*p);
  EXPECT_GT(sent, 100u);
  SendResult full;
  full.status = SendStatus::kFull;
  EXPECT_NE(p->Explain(full).message().find("no broker is running to persist it"),
            std::string::npos)
      << p->Explain(full).ToString();
  EXPECT_EQ(p->WaitDurable(0, 0, 10ms).code(), StatusCode::kTimeout);
  // The sender waits with no deadline; the main thread never touches `p`
  // until the sender has returned.
  std::promise<SendResult> sent_result;
  std::future<SendResult> done = sent_result.get_future();
  std::thread sender([&] {
    sent_result.set_value(
        p->Send(std::nullopt, Value(sent), {}, 0, std::chrono::nanoseconds::max()));
  });
  // Still waiting while no broker frees space (a deadline at or near now
  // would have ended it with kTimeout).
  EXPECT_EQ(done.wait_for(200ms), std::future_status::timeout);
  Broker broker(*bus);
  AddDurability(broker);
  const Status started = broker.Start(BrokerMode::kExclusive);
  const bool returned = started.ok() && done.wait_for(10s) == std::future_status::ready;
  if (!returned) (void)bus->DeleteTopic("t");  // ends the Send: the test fails, not hangs
  sender.join();
  ASSERT_TRUE(started.ok()) << started.ToString();
  ASSERT_TRUE(returned) << "Send did not return within 10 s of the broker starting";
  const SendResult r = done.get();
  EXPECT_EQ(r.status, SendStatus::kOk);
  EXPECT_EQ(r.offset, sent);
  ASSERT_TRUE(p->WaitDurable(0, sent, 10s).ok());
  broker.Stop();
  Result<Consumer> c = bus->CreateConsumer("t", ConsumerOptions{});
  auto got = Drain(*c, sent + 1);
  ASSERT_EQ(got.size(), sent + 1);
  for (uint64_t i = 0; i <= sent; ++i) ASSERT_EQ(got[i].second, Value(i));
}

// A claim held a while (well within the unblock timeout) after the partition
// sat idle is not taken for dead: the broker's unblocker counted the timeout
// from when its persistence slot stopped moving, so after an idle half second
// a claim held 50 ms was unblocked and its record lost.
TEST_F(DurabilityTest, AClaimHeldBrieflyAfterAnIdlePartitionIsNotDeclaredDead) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(false));
  ASSERT_TRUE(bus.ok());
  TopicOptions single = Topic();
  single.single_producer = true;
  ASSERT_TRUE(bus->CreateTopic("multi", Topic()).ok());
  ASSERT_TRUE(bus->CreateTopic("single", single).ok());
  Broker broker(*bus);
  AddDurability(broker);
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  for (const char* topic : {"multi", "single"}) {
    SCOPED_TRACE(topic);
    Result<Producer> p = bus->CreateProducer(topic);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(p->TrySend(std::nullopt, "warm-up", {}, 0).status, SendStatus::kOk);
    std::this_thread::sleep_for(500ms);  // idle: more than twice the 200 ms timeout
    ProducerClaim c = p->TryClaim(0, 0, 0, 5, false);
    ASSERT_TRUE(c.ok());
    std::memcpy(c.value().data(), "hello", 5);
    std::this_thread::sleep_for(50ms);
    ASSERT_EQ(p->Commit(c), SendStatus::kOk);
    ASSERT_TRUE(p->WaitDurable(0, 1, 10s).ok());
  }
  EXPECT_EQ(bus->Info()->claims_unblocked, 0u);
  broker.Stop();
}

// An unblock timeout too long to count in nanoseconds means "for good", not
// "at once" (it overflowed, and a live single producer's claim held 300 ms
// was declared dead). A huge sweep period likewise.
TEST_F(DurabilityTest, AHugeUnblockTimeoutNeverUnblocksALiveClaim) {
  ScopedBusName name;
  BusOptions o = Options(false);
  o.unblock_timeout_ms = std::numeric_limits<int64_t>::max();
  o.sweep_period_ms = 10;
  Result<Bus> bus = Bus::Open(*name, o);
  ASSERT_TRUE(bus.ok());
  TopicOptions single = Topic();
  single.single_producer = true;
  ASSERT_TRUE(bus->CreateTopic("single", single).ok());
  Broker broker(*bus);
  AddDurability(broker);
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  ASSERT_TRUE(broker.WaitReady(10s).ok());
  Result<Producer> p = bus->CreateProducer("single");
  ASSERT_TRUE(p.ok());
  ProducerClaim c = p->TryClaim(0, 0, 0, 5, false);
  ASSERT_TRUE(c.ok());
  std::memcpy(c.value().data(), "hello", 5);
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(p->Commit(c), SendStatus::kOk);
  EXPECT_EQ(bus->Info()->claims_unblocked, 0u);
  broker.Stop();
  const uint64_t ticks = broker.stats().ticks;

  Broker slow(*bus, BrokerOptions{.tick_ms = std::numeric_limits<int64_t>::max()});
  ASSERT_TRUE(slow.Start(BrokerMode::kExclusive).ok());
  std::this_thread::sleep_for(300ms);
  slow.Stop();
  EXPECT_LE(slow.stats().ticks, 2u) << "the first broker ticked " << ticks << " times";
}

// A live producer that holds a claim past the unblock timeout keeps it: the
// broker takes only claims whose process is dead. (It took them all: the
// late owner's in-place writes and its commit then landed in records other
// producers had claimed after the padding, corrupting them in the ring and
// on disk.)
TEST_F(DurabilityTest, ALiveProducerHoldingAClaimPastTheTimeoutKeepsIt) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(false));
  ASSERT_TRUE(bus.ok());
  TopicOptions small = Topic();
  small.ring_bytes = 64 * 1024;
  ASSERT_TRUE(bus->CreateTopic("t", small).ok());
  Broker broker(*bus);
  AddDurability(broker);
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  Result<Producer> slow = bus->CreateProducer("t");
  Result<Producer> other = bus->CreateProducer("t");
  Result<Consumer> c = bus->CreateConsumer("t");
  ASSERT_TRUE(slow.ok() && other.ok() && c.ok());
  const std::string value(2000, 's');
  ProducerClaim claim = slow->TryClaim(0, 0, 0, static_cast<uint32_t>(value.size()), false);
  ASSERT_TRUE(claim.ok());
  ASSERT_EQ(claim.offset(), 0u);
  // Three timeouts (200 ms) while another producer writes behind the claim.
  for (int i = 0; i < 60; ++i) {
    ASSERT_EQ(other->TrySend(std::nullopt, Value(i), {}, 0).status, SendStatus::kOk);
    std::this_thread::sleep_for(10ms);
  }
  std::memcpy(claim.value().data(), value.data(), value.size());
  ASSERT_EQ(slow->Commit(claim), SendStatus::kOk);
  EXPECT_EQ(bus->Info()->claims_unblocked, 0u);
  const auto got = Drain(*c, 61);
  ASSERT_EQ(got.size(), 61u);
  EXPECT_EQ(got[0].first, 0u);
  EXPECT_EQ(got[0].second, value);
  for (int i = 0; i < 60; ++i) {
    ASSERT_EQ(got[i + 1].first, static_cast<uint64_t>(i + 1));
    ASSERT_EQ(got[i + 1].second, Value(i));
  }
  ASSERT_TRUE(other->WaitDurable(0, 60, 10s).ok());
  broker.Stop();
  Result<VerifyReport> v = VerifyLog(PartitionDir(dir_, "t", 0));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->records, 61u);
}

// An aborted claim as the partition's last frame: the broker's written and
// durable offsets reach the next offset (they stayed one short, and a
// stopping broker named the skipped offset as a record it had not written).
TEST_F(DurabilityTest, AnAbortedLastClaimLeavesNothingUnwritten) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(false));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  Broker broker(*bus);
  AddDurability(broker);
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  Result<Producer> p = bus->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  // A consumer that has read everything, waiting at the end when the claim
  // is aborted: its published position (the lag others see) follows.
  Result<Consumer> waiting = bus->CreateConsumer("t", ConsumerOptions{});
  ASSERT_TRUE(waiting.ok());
  ASSERT_EQ(p->TrySend(std::nullopt, "kept", {}, 0).status, SendStatus::kOk);
  ASSERT_EQ(Drain(*waiting, 1).size(), 1u);
  ProducerClaim c = p->TryClaim(0, 0, 0, 5, false);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(p->Abort(c), SendStatus::kOk);
  EXPECT_EQ(waiting->Poll([](const ConsumerRecord&) {}, 10).records, 0u);
  Result<TopicInfo> described = bus->DescribeTopic("t");
  ASSERT_TRUE(described.ok());
  ASSERT_EQ(described->consumers.size(), 1u);
  EXPECT_EQ(described->consumers[0].partitions.at(0).position, 2u);
  EXPECT_EQ(described->consumers[0].partitions.at(0).lag, 0u);
  // Its own position, where it would resume, stays after the last record:
  // a log restored after a reboot ends there and gives offset 1 out again.
  ASSERT_TRUE(waiting->Position(0).ok());
  EXPECT_EQ(*waiting->Position(0), 1u);
  std::optional<PartitionInfo> info;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    Result<TopicInfo> t = bus->DescribeTopic("t");
    ASSERT_TRUE(t.ok());
    info = t->partitions.at(0);
    if (info->durable_offset == info->next_offset) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(info);
  EXPECT_EQ(info->next_offset, 2u);
  EXPECT_EQ(info->written_offset, 2u);
  EXPECT_EQ(info->durable_offset, 2u);
  broker.Stop();
  // A later broker (shared memory alive) finds nothing lost, and the log,
  // with another record after the skipped offset, reads and verifies clean.
  Broker again(*bus);
  AddDurability(again);
  ASSERT_TRUE(again.Start(BrokerMode::kExclusive).ok());
  ASSERT_EQ(p->TrySend(std::nullopt, "after", {}, 0).offset, 2u);
  ASSERT_TRUE(p->WaitDurable(0, 2, 10s).ok());
  again.Stop();
  Result<VerifyReport> v = VerifyLog(dir_ + "/t/0");
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->damages.front().ToString();
  EXPECT_EQ(v->records, 2u);
  EXPECT_EQ(v->gaps, 0u);
}

// A durable topic written with no broker and no data dir has no persistence
// slot. A producer that dies holding a claim stops the others a ring later
// (they never lap an open claim), after they overwrote the records before
// it. A broker that arrives later persists from that claim (and unblocks it),
// not from the start of the newest lap: every record still in the ring
// reaches the log, a consumer waiting at the dead claim goes on, and
// WaitDurable says which offsets never reached disk instead of "ok".
TEST_F(DurabilityTest, ALateBrokerPersistsEveryRecordTheRingStillHoldsAndNamesTheLostOnes) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, BusOptions{});
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  Result<Producer> p = bus->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(p->TrySend(std::nullopt, Value(i), {}, 0).ok());
  Result<Consumer> c = bus->CreateConsumer("t");
  ASSERT_EQ(Drain(*c, 5).size(), 5u);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Result<Bus> b = Bus::Open(*name, BusOptions{});
    if (!b.ok()) _exit(2);
    Result<Producer> dying = b->CreateProducer("t");
    if (!dying.ok()) _exit(3);
    ProducerClaim claim = dying->TryClaim(0, 0, 0, 4, false);  // offset 5, never committed
    if (!claim.ok()) _exit(4);
    kill(getpid(), SIGKILL);
  }
  int st = 0;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  ASSERT_TRUE(WIFSIGNALED(st)) << "the claiming child exited with " << WEXITSTATUS(st);
  // Offsets 6..: up to a ring past the dead claim, overwriting 0..4.
  uint64_t last = 5;
  SendResult r;
  while ((r = p->TrySend(std::nullopt, Value(last + 1), {}, 0)).ok()) last = r.offset;
  ASSERT_EQ(r.status, SendStatus::kFull);
  ASSERT_GT(last, 300u);

  Broker broker(*bus);
  AddDurability(broker);
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  ASSERT_TRUE(broker.WaitReady(10s).ok());  // it has taken the topic over
  const Status all = p->WaitDurable(0, last, 10s);
  EXPECT_TRUE(all.ok()) << all.ToString();
  for (uint64_t lost : {0u, 4u}) {
    const Status s = p->WaitDurable(0, lost, 10s);
    EXPECT_EQ(s.code(), StatusCode::kOutOfRange) << s.ToString();
    EXPECT_NE(s.message().find("offsets 0..4 are not in the log (overwritten in the ring"),
              std::string::npos)
        << s.ToString();
  }
  // The consumer that waited at the dead claim gets everything after it.
  const auto got = Drain(*c, last - 5);
  ASSERT_EQ(got.size(), last - 5);
  for (uint64_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].first, i + 6);
    ASSERT_EQ(got[i].second, Value(i + 6));
  }
  broker.Stop();
  Result<VerifyReport> v = VerifyLog(PartitionDir(dir_, "t", 0));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->first_offset, 6u);
  EXPECT_EQ(v->last_offset, last);
  EXPECT_EQ(v->records, last - 5);
  // The log says which offsets it never had.
  EXPECT_EQ(v->gaps, 1u);
  EXPECT_EQ(v->gap_offsets, 5u);
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

// ---- deleting topics ------------------------------------------------------------

// Sends `n` records to every partition of `topic` and waits until they are durable.
void ProduceDurably(Bus& bus, const std::string& topic, uint64_t n) {
  Result<Producer> p = bus.CreateProducer(topic);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  for (uint32_t part = 0; part < p->partition_count(); ++part) {
    uint64_t last = 0;
    for (uint64_t i = 0; i < n; ++i) {
      SendResult r = p->Send(std::nullopt, Value(i), {}, part, 10s);
      ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
      last = r.offset;
    }
    ASSERT_TRUE(p->WaitDurable(part, last, 10s).ok());
  }
}

// A consumer of partition 0 of `topic` from the earliest offset that
// appends every loss it is told of to `losses`.
Result<Consumer> ConsumerRecordingLosses(Bus& bus, const std::string& topic,
                                         std::vector<OverrunInfo>& losses) {
  ConsumerOptions co;
  co.partitions = {0};
  co.start = StartPosition::Earliest();
  co.on_overrun = [&losses](const OverrunInfo& o) { losses.push_back(o); };
  return bus.CreateConsumer(topic, co);
}

// A durable topic `topic` (DurabilityTestTopic) with `n` records in the data
// dir of `options`, written by an embedded broker that then stops.
void PersistTopic(const std::string& bus_name, const BusOptions& options, const std::string& topic,
                  uint64_t n, uint32_t partitions = 1) {
  Result<Bus> bus = Bus::Open(bus_name, options);
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  TopicOptions o = DurabilityTestTopic();
  o.partitions = partitions;
  ASSERT_TRUE(bus->CreateTopic(topic, o).ok());
  ProduceDurably(*bus, topic, n);
}

// Names in the data dir (topic directories and anything else) but the topic
// locks' directory (TopicDirLock), which stays.
std::vector<std::string> DataDirEntries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename() != "~locks") out.push_back(e.path().filename());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A topic that was deleted comes back new: offset 0, nothing old replayed.
void ExpectFreshTopic(Bus& bus, const std::string& topic) {
  ASSERT_TRUE(bus.CreateTopic(topic, DurabilityTestTopic()).ok());
  Result<TopicInfo> info = bus.DescribeTopic(topic);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->partitions[0].next_offset, 0u);
  Result<Producer> p = bus.CreateProducer(topic);
  ASSERT_TRUE(p.ok());
  SendResult r = p->Send(std::nullopt, "fresh", {}, 0, 10s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.offset, 0u);
  ConsumerOptions co;
  co.partitions = {0};
  co.start = StartPosition::Earliest();
  Result<Consumer> c = bus.CreateConsumer(topic, co);
  ASSERT_TRUE(c.ok());
  auto got = Drain(*c, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (std::pair<uint64_t, std::string>{0, "fresh"}));
  int more = 0;
  (void)c->PollFor([&](const ConsumerRecord&) { ++more; }, 16, 100ms);
  EXPECT_EQ(more, 0);
}

// The newest segment of DATA_DIR/<topic>/0.
std::string LastSegment(const std::string& dir, const std::string& topic) {
  std::vector<std::string> logs;
  for (const auto& e : fs::directory_iterator(dir + "/" + topic + "/0")) {
    if (e.path().extension() == ".log") logs.push_back(e.path().string());
  }
  std::sort(logs.begin(), logs.end());
  return logs.empty() ? std::string() : logs.back();
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Reads partition 0 of `topic` from the earliest offset up to offset `last`
// (or for 10 s); the offsets must rise strictly (no offset twice).
std::vector<std::pair<uint64_t, std::string>> ReadAllOnce(Bus& bus, const std::string& topic,
                                                          uint64_t last) {
  ConsumerOptions co;
  co.partitions = {0};
  co.start = StartPosition::Earliest();
  Result<Consumer> c = bus.CreateConsumer(topic, co);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return {};
  std::vector<std::pair<uint64_t, std::string>> got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((got.empty() || got.back().first < last) && std::chrono::steady_clock::now() < deadline) {
    (void)c->PollFor(
        [&](const ConsumerRecord& rec) {
          got.emplace_back(rec.offset(), std::string(rec.value()));
        },
        256, 50ms);
  }
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_LT(got[i - 1].first, got[i].first) << "at " << i;
  }
  return got;
}

// Segments deleted by retention while a consumer reads them from disk: the
// offsets that went with them are reported as retention's, not as damage
// (they were "damaged on disk" when the reader was past the log start).
TEST_F(DurabilityTest, ColdReaderTellsSegmentsRetentionDeletedUnderItFromDamage) {
  ScopedBusName name;
  {
    Result<Bus> bus = Bus::Open(*name, Options(false));
    ASSERT_TRUE(bus.ok());
    TopicOptions t = Topic();
    t.segment_bytes = 4096;
    ASSERT_TRUE(bus->CreateTopic("t", t).ok());
    Broker broker(*bus);
    AddDurability(broker);
    ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
    ProduceDurably(*bus, "t", 300);
    broker.Stop();
  }
  std::shared_ptr<internal::ColdReader> cold = internal::MakeLogColdReader(dir_);
  internal::ColdReadRequest req;
  req.topic = "t";
  req.limit = 5;
  req.written_below = 300;
  std::vector<uint64_t> offsets;
  auto sink = [&](const RecordView& v) { offsets.push_back(v.offset()); };
  Result<internal::ColdReadBatch> b = cold->ReadFrom(req, sink);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_EQ(b->next_offset, 5u);
  uint64_t log_start = 0;
  {
    Result<PartitionLog> log = PartitionLog::Open(dir_ + "/t/0", LogOptions{.segment_bytes = 4096});
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    Result<RetentionResult> r = log->Retention(RetentionPolicy{8192, std::nullopt}, 0);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_GE(r->removed.size(), 2u);
    log_start = log->log_start_offset();
    ASSERT_TRUE(log->Close().ok());
  }
  req.limit = 1000;
  req.offset = b->next_offset;
  std::optional<internal::ColdReadBatch> lost;
  for (int i = 0; i < 100 && !lost; ++i) {
    b = cold->ReadFrom(req, sink);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    if (b->damaged_to > b->damaged_from) lost = *b;
    req.offset = b->next_offset;
  }
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->damaged_to, log_start);
  EXPECT_TRUE(lost->damage_was_retention);
  // The batch that says so ends before the log start; the next begins there.
  ASSERT_FALSE(offsets.empty());
  EXPECT_LT(offsets.back(), lost->damaged_from);
  EXPECT_EQ(lost->next_offset, log_start);
  offsets.clear();
  b = cold->ReadFrom(req, sink);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_FALSE(offsets.empty());
  EXPECT_EQ(offsets.front(), log_start);
}

// Damage in the middle of a log: a consumer reading it hears of the lost
// offsets before it gets the first record after them, as it would from the
// ring (it got that record first, then the loss).
TEST_F(DurabilityTest, ALossInsideTheLogIsReportedBeforeTheRecordAfterIt) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
  ASSERT_TRUE(bus.ok());
  TopicOptions one_segment = Topic();
  one_segment.segment_bytes = 1 << 20;
  ASSERT_TRUE(bus->CreateTopic("t", one_segment).ok());
  constexpr uint64_t kRecords = 4000;  // ~0.6 MB through a 64 KiB ring, into one segment
  {
    Broker broker(*bus);
    AddDurability(broker);
    ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
    ASSERT_TRUE(broker.WaitReady(10s).ok());
    ProduceDurably(*bus, "t", kRecords);
    broker.Stop();
  }
  const std::string segment = LastSegment(dir_, "t");
  ASSERT_FALSE(segment.empty());
  {
    std::fstream f(segment, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(segment) / 4));
    const std::string garbage(300, '\xab');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  std::vector<uint64_t> offsets;
  std::vector<std::pair<OverrunInfo, size_t>> losses;  // and how many records came before
  ConsumerOptions co;
  co.on_overrun = [&](const OverrunInfo& o) { losses.emplace_back(o, offsets.size()); };
  Result<Consumer> c = bus->CreateConsumer("t", co);
  ASSERT_TRUE(c.ok());
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((offsets.empty() || offsets.back() + 1 < kRecords) &&
         std::chrono::steady_clock::now() < deadline) {
    (void)c->PollFor([&](const ConsumerRecord& r) { offsets.push_back(r.offset()); }, 256, 50ms);
  }
  ASSERT_EQ(losses.size(), 1u);
  const auto& [loss, before] = losses[0];
  EXPECT_EQ(loss.cause, LossCause::kDamaged);
  ASSERT_GT(loss.from_offset, 0u);
  ASSERT_GT(loss.to_offset, loss.from_offset);
  EXPECT_EQ(before, loss.from_offset);  // offsets 0 .. from - 1, then the loss
  ASSERT_GT(offsets.size(), before);
  EXPECT_EQ(offsets[before], loss.to_offset);
  EXPECT_EQ(offsets.size(), kRecords - loss.lost_records);
}

// A topic created on a bus that does not know its data dir yet (a client
// started before the broker after a reboot) starts at offset 0, while its
// log on disk goes further. Those offsets would name two records: the
// broker persists none of the new ring, and the log keeps what it had.
TEST_F(DurabilityTest, ARingCreatedWithoutItsLogIsNotPersistedOverIt) {
  ScopedBusName name;
  PersistTopic(*name, Options(/*embedded=*/true), "t", 100);
  ASSERT_TRUE(Bus::Remove(*name).ok());
  Result<Bus> bus = Bus::Open(*name, BusOptions{});  // no data dir known
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  Result<Producer> p = bus->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 150; ++i) {
    ASSERT_TRUE(p->TrySend(std::nullopt, "new-" + std::to_string(i), {}, 0).ok());
  }
  Broker broker(*bus);
  AddDurability(broker);
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  ASSERT_TRUE(broker.WaitReady(10s).ok());
  const Status s = p->WaitDurable(0, 149, 300ms);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(p->WaitDurable(0, 0, 0ms).ok());
  broker.Stop();
  Result<VerifyReport> v = VerifyLog(PartitionDir(dir_, "t", 0));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->records, 100u);
  EXPECT_EQ(v->last_offset, 99u);
}

// A memory-only topic never reads a log: one left in the data dir under its
// name (an earlier durable topic's, deleted) is not its history. (Not
// deleted, the log refuses a memory-only topic of its name.)
TEST_F(DurabilityTest, AMemoryOnlyTopicNeverReadsALogUnderItsName) {
  ScopedBusName name;
  PersistTopic(*name, Options(/*embedded=*/true), "m", 50);
  ASSERT_TRUE(Bus::Remove(*name).ok());
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
  ASSERT_TRUE(bus.ok());
  TopicOptions memory = Topic();
  memory.durable = false;
  ASSERT_EQ(bus->CreateTopic("m", memory).code(), StatusCode::kAlreadyExists);
  // What `runnel topic delete m` does to a topic that is only on disk.
  ASSERT_TRUE(WriteTopicTombstone(dir_, "m", {}).ok());
  ASSERT_TRUE(bus->CreateTopic("m", memory).ok());
  Result<Producer> p = bus->CreateProducer("m");
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 2000; ++i) {  // laps the 64 KiB ring: offset 0 is gone from it
    ASSERT_TRUE(p->TrySend(std::nullopt, "new-" + std::to_string(i), {}, 0).ok());
  }
  std::vector<OverrunInfo> losses;
  Result<Consumer> c = ConsumerRecordingLosses(*bus, "m", losses);
  ASSERT_TRUE(c.ok());
  std::vector<std::pair<uint64_t, std::string>> got;
  (void)c->PollFor(
      [&](const ConsumerRecord& r) { got.emplace_back(r.offset(), std::string(r.value())); }, 64,
      1s);
  ASSERT_FALSE(got.empty());
  for (const auto& [offset, value] : got) {
    EXPECT_EQ(value, "new-" + std::to_string(offset));
  }
  EXPECT_GT(got.front().first, 0u);
}

// A log cut short (by hand, here) while the ring still lives: a consumer
// reading from the earliest offset gets what the log still has, then hears
// that the records between the cut and the ring's oldest are lost because
// the log is damaged (not that it fell behind the ring), then the ring.
TEST_F(DurabilityTest, RecordsMissingFromADamagedLogAreReportedAsDamage) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
  ASSERT_TRUE(bus.ok());
  TopicOptions one_segment = Topic();
  one_segment.segment_bytes = 1 << 20;
  ASSERT_TRUE(bus->CreateTopic("t", one_segment).ok());
  constexpr uint64_t kRecords = 4000;  // ~0.6 MB through a 64 KiB ring, into one segment
  {
    Broker broker(*bus);
    AddDurability(broker);
    ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
    ASSERT_TRUE(broker.WaitReady(10s).ok());
    ProduceDurably(*bus, "t", kRecords);
    broker.Stop();
  }
  const std::string segment = LastSegment(dir_, "t");
  ASSERT_FALSE(segment.empty());
  fs::resize_file(segment, 64 + (fs::file_size(segment) - 64) / 4);
  Result<TopicInfo> info = bus->DescribeTopic("t");
  ASSERT_TRUE(info.ok());
  const uint64_t ring_from = info->partitions[0].earliest_offset;
  ASSERT_GT(ring_from, 0u);

  std::vector<OverrunInfo> losses;
  Result<Consumer> c = ConsumerRecordingLosses(*bus, "t", losses);
  ASSERT_TRUE(c.ok());
  std::vector<uint64_t> offsets;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((offsets.empty() || offsets.back() + 1 < kRecords) &&
         std::chrono::steady_clock::now() < deadline) {
    (void)c->PollFor([&](const ConsumerRecord& r) { offsets.push_back(r.offset()); }, 256, 50ms);
  }
  ASSERT_EQ(losses.size(), 1u);
  EXPECT_EQ(losses[0].cause, LossCause::kDamaged);
  EXPECT_EQ(losses[0].to_offset, ring_from);
  ASSERT_LT(losses[0].from_offset, ring_from);
  // Everything but the lost range, in order, once.
  std::vector<uint64_t> expected;
  for (uint64_t i = 0; i < kRecords; ++i) {
    if (i < losses[0].from_offset || i >= losses[0].to_offset) expected.push_back(i);
  }
  EXPECT_EQ(offsets, expected);
}

// A repair that cuts acknowledged records from a log while the ring lives on
// leaves a gap marker: after a reboot the topic continues after the cut
// offsets (they are never handed out again), and a consumer reading the log
// hears that they are lost instead of passing over them in silence.
TEST_F(DurabilityTest, OffsetsCutByARepairAreNeverReusedAndConsumersAreTold) {
  ScopedBusName name;
  constexpr uint64_t kDurable = 1000;
  PersistTopic(*name, Options(/*embedded=*/true), "t", kDurable);
  const std::string segment = LastSegment(dir_, "t");
  ASSERT_FALSE(segment.empty());
  fs::resize_file(segment, fs::file_size(segment) / 2);
  {
    Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
    ASSERT_TRUE(bus.ok());
    Broker broker(*bus);
    AddDurability(broker, /*repair=*/true);
    ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
    ASSERT_TRUE(broker.WaitReady(10s).ok());
    broker.Stop();
  }
  ASSERT_TRUE(Bus::Remove(*name).ok());  // a reboot: only the repaired log is left
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  Result<TopicInfo> info = bus->DescribeTopic("t");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->partitions[0].next_offset, kDurable);

  std::vector<OverrunInfo> losses;
  Result<Consumer> c = ConsumerRecordingLosses(*bus, "t", losses);
  ASSERT_TRUE(c.ok());
  std::vector<std::pair<uint64_t, std::string>> got;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (losses.empty() && std::chrono::steady_clock::now() < deadline) {
    (void)c->PollFor(
        [&](const ConsumerRecord& r) { got.emplace_back(r.offset(), std::string(r.value())); }, 256,
        50ms);
  }
  ASSERT_FALSE(got.empty());
  ASSERT_LT(got.size(), kDurable);
  for (uint64_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].first, i);
    ASSERT_EQ(got[i].second, Value(i));
  }
  ASSERT_EQ(losses.size(), 1u);
  EXPECT_EQ(losses[0].cause, LossCause::kNotPersisted);
  EXPECT_EQ(losses[0].from_offset, got.size());
  EXPECT_EQ(losses[0].to_offset, kDurable);
  EXPECT_EQ(losses[0].lost_records, kDurable - got.size());
  Result<VerifyReport> v = VerifyLog(PartitionDir(dir_, "t", 0));
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->gaps, 1u);
  EXPECT_EQ(v->gap_offsets, kDurable - got.size());
}

// After the bus's shared memory is lost, a topic whose log lost the end of
// what its checkpoint says is durable (the segment was cut short) comes back
// at the checkpoint's next offset, not at the end that is still readable:
// offsets once acknowledged as durable are never given to other records.
// Persisting waits for the file to be restored (or for --repair, which then
// records the lost offsets as a gap).
TEST_F(DurabilityTest, OffsetsOnceDurableAreNeverReusedWhenTheRestoredLogLostItsEnd) {
  for (const bool repair : {false, true}) {
    SCOPED_TRACE(repair ? "repair" : "file restored");
    TearDown();
    SetUp();
    ScopedBusName name;
    constexpr uint64_t kDurable = 1000;
    {
      Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
      ASSERT_TRUE(bus.ok());
      ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
      ProduceDurably(*bus, "t", kDurable);
    }                                      // the broker stops: the checkpoint says 1000
    ASSERT_TRUE(Bus::Remove(*name).ok());  // and a reboot
    const std::string segment = LastSegment(dir_, "t");
    ASSERT_FALSE(segment.empty());
    const std::string whole = ReadWholeFile(segment);
    fs::resize_file(segment, whole.size() / 2);
    const Result<uint64_t> on_disk = NextOffsetOnDisk(dir_, "t", 0);
    ASSERT_TRUE(on_disk.ok()) << on_disk.status().ToString();
    EXPECT_EQ(*on_disk, kDurable);

    uint64_t after = 0;
    {
      Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
      ASSERT_TRUE(bus.ok());
      ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
      Result<TopicInfo> info = bus->DescribeTopic("t");
      ASSERT_TRUE(info.ok()) << info.status().ToString();
      EXPECT_EQ(info->partitions[0].next_offset, kDurable);
      Result<Producer> p = bus->CreateProducer("t");
      ASSERT_TRUE(p.ok());
      const SendResult r = p->Send(std::nullopt, "after the damage", {}, 0, 10s);
      ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
      after = r.offset;
      EXPECT_EQ(after, kDurable);
      // The damaged log is not written to.
      EXPECT_FALSE(p->WaitDurable(0, after, 300ms).ok());
    }
    if (repair) {
      Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
      ASSERT_TRUE(bus.ok());
      Broker broker(*bus);
      AddDurability(broker, /*repair=*/true);
      ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
      ASSERT_TRUE(broker.WaitReady(10s).ok());
      Result<Producer> p = bus->CreateProducer("t");
      ASSERT_TRUE(p.ok());
      ASSERT_TRUE(p->WaitDurable(0, after, 10s).ok());
      // What survived the cut, then the new record after the gap.
      const auto got = ReadAllOnce(*bus, "t", after);
      ASSERT_FALSE(got.empty());
      ASSERT_LT(got.size(), kDurable + 1);
      EXPECT_EQ(got.back(), (std::pair<uint64_t, std::string>{after, "after the damage"}));
      for (size_t i = 0; i + 1 < got.size(); ++i) {
        ASSERT_EQ(got[i].first, i);
        ASSERT_EQ(got[i].second, Value(i));
      }
      broker.Stop();
    } else {
      {
        std::ofstream out(segment, std::ios::binary | std::ios::trunc);
        out.write(whole.data(), static_cast<std::streamsize>(whole.size()));
      }
      Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
      ASSERT_TRUE(bus.ok());
      ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
      Result<Producer> p = bus->CreateProducer("t");
      ASSERT_TRUE(p.ok());
      ASSERT_TRUE(p->WaitDurable(0, after, 10s).ok());
      const auto got = ReadAllOnce(*bus, "t", after);
      ASSERT_EQ(got.size(), kDurable + 1);
      for (uint64_t i = 0; i < kDurable; ++i) {
        ASSERT_EQ(got[i].first, i);
        ASSERT_EQ(got[i].second, Value(i));
      }
      EXPECT_EQ(got.back(), (std::pair<uint64_t, std::string>{after, "after the damage"}));
    }
  }
}

TEST_F(DurabilityTest, TopicDeletedWithoutABrokerStaysDeletedWhenOneStarts) {
  ScopedBusName name;
  {
    Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
    ASSERT_TRUE(bus.ok());
    ASSERT_TRUE(bus->CreateTopic("gone", Topic(2)).ok());
    ASSERT_TRUE(bus->CreateTopic("kept", Topic()).ok());
    ProduceDurably(*bus, "gone", 300);
    ProduceDurably(*bus, "kept", 300);
  }  // the broker stops
  {
    Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
    ASSERT_TRUE(bus.ok());
    Result<TopicInfo> before = bus->DescribeTopic("gone");
    ASSERT_TRUE(before.ok());
    ASSERT_TRUE(bus->DeleteTopic("gone").ok());
    // Marked, not removed: no broker runs to close its logs.
    std::optional<TopicTombstone> t = ReadTopicTombstone(dir_, "gone");
    ASSERT_TRUE(t.has_value());
    EXPECT_EQ(t->generation, before->generation);
    EXPECT_EQ(t->created_wall_ns, before->created_wall_ns);
    EXPECT_TRUE(fs::exists(dir_ + "/gone/0"));
    EXPECT_FALSE(ReadTopicTombstone(dir_, "kept").has_value());
  }
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  EXPECT_EQ(bus->DescribeTopic("gone").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(DataDirEntries(dir_), (std::vector<std::string>{"kept"}));
  Result<TopicInfo> kept = bus->DescribeTopic("kept");
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->partitions[0].next_offset, 300u);
  ExpectFreshTopic(*bus, "gone");
}

TEST_F(DurabilityTest, TopicDeletedWhileTheBrokerRunsIsNotRestoredAfterTheSharedMemoryIsGone) {
  ScopedBusName name;
  {
    Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
    ASSERT_TRUE(bus.ok());
    ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
    ASSERT_TRUE(bus->CreateTopic("gone", Topic()).ok());
    ASSERT_TRUE(bus->CreateTopic("kept", Topic()).ok());
    ProduceDurably(*bus, "gone", 200);
    ProduceDurably(*bus, "kept", 200);
    ASSERT_TRUE(bus->DeleteTopic("gone").ok());
    // The broker closes the logs on its next tick and removes the directory.
    ASSERT_TRUE(testing::Eventually(
        [&] { return DataDirEntries(dir_) == std::vector<std::string>{"kept"}; }, 5s))
        << DataDirEntries(dir_).size();
  }
  ASSERT_TRUE(Bus::Remove(*name).ok());  // a reboot
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  Result<std::vector<TopicInfo>> topics = bus->ListTopics();
  ASSERT_TRUE(topics.ok());
  ASSERT_EQ(topics->size(), 1u);
  EXPECT_EQ((*topics)[0].name, "kept");
  ExpectFreshTopic(*bus, "gone");
}

// A topic that leaves the bus without the delete mark on disk (a peer wrote
// over its directory entry; here the bus-level delete, which writes no
// tombstone) keeps its log: the broker stops persisting it and says so, but
// removes nothing. A re-created topic continues at the offsets on disk.
TEST_F(DurabilityTest, ATopicGoneFromTheBusWithoutATombstoneKeepsItsLog) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  ASSERT_TRUE(bus->CreateTopic("kept", Topic()).ok());
  ProduceDurably(*bus, "kept", 200);
  ASSERT_TRUE(bus->core()->DeleteTopic("kept").ok());
  // Long enough for the broker to close the log (it ticks every 20 ms).
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(DataDirEntries(dir_), std::vector<std::string>{"kept"});
  ASSERT_TRUE(bus->CreateTopic("kept", Topic()).ok());
  auto producer = bus->CreateProducer("kept");
  ASSERT_TRUE(producer.ok());
  const SendResult r = producer->Send(std::nullopt, "next", {}, kAnyPartition, 5s);
  ASSERT_TRUE(r.ok()) << SendStatusName(r.status);
  EXPECT_EQ(r.offset, 200u);
}

// Threads deleting the same topic at once: one deletes it, the others are
// told it does not exist (they shared one temporary tombstone file name, and
// were told "nothing was deleted" when another renamed it away).
TEST_F(DurabilityTest, ConcurrentDeletesOfOneTopicSucceedOnceAndFindItGoneOtherwise) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  for (int round = 0; round < 10; ++round) {
    ASSERT_TRUE(bus->CreateTopic("x", Topic()).ok());
    std::vector<Status> results(4);
    std::vector<std::thread> threads;
    for (Status& r : results) threads.emplace_back([&bus, &r] { r = bus->DeleteTopic("x"); });
    for (std::thread& t : threads) t.join();
    int ok = 0;
    for (const Status& r : results) {
      if (r.ok()) {
        ++ok;
      } else {
        EXPECT_EQ(r.code(), StatusCode::kNotFound) << r.ToString();
        EXPECT_EQ(r.message().find("nothing was deleted"), std::string::npos) << r.ToString();
      }
    }
    EXPECT_EQ(ok, 1) << "round " << round;
  }
  // The name can be used again (a late deleter's tombstone is cleared).
  ASSERT_TRUE(bus->CreateTopic("x", Topic()).ok());
  ProduceDurably(*bus, "x", 10);
}

// The topic lock excludes other threads (and processes: an flock), nests
// within a thread however the data dir is spelled (a second flock of the
// same file would wait for itself for ever), and other topics are not held.
TEST_F(DurabilityTest, TheTopicLockExcludesOthersAndNestsWithinAThread) {
  fs::create_directories(dir_);
  std::atomic<bool> outer_released{false};
  std::atomic<bool> other_got_it{false};
  std::thread other;
  {
    const TopicDirLock outer(dir_, "t");
    ASSERT_TRUE(outer.held());
    for (const std::string& spelling :
         {dir_ + "/", dir_ + "/.", dir_ + "/../" + fs::path(dir_).filename().string()}) {
      const TopicDirLock inner(spelling, "t");  // returns at once
      EXPECT_TRUE(inner.held()) << spelling;
    }
    const TopicDirLock another_topic(dir_, "u");
    EXPECT_TRUE(another_topic.held());
    other = std::thread([&] {
      const TopicDirLock mine(dir_, "t");
      other_got_it = true;
      EXPECT_TRUE(outer_released.load());
    });
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(other_got_it.load());
    outer_released = true;
  }
  other.join();
  EXPECT_TRUE(other_got_it.load());
}

// A deleted topic the running broker never saw on the bus (restored at its
// activation, or created, and deleted before a tick saw it): its log is
// removed all the same, by the sweep of tombstones (it stayed until the
// next broker start or a create of that name).
TEST_F(DurabilityTest, TheRunningBrokerRemovesTheLogOfADeletedTopicItNeverSaw) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  // As a delete leaves it: the log, its settings and the tombstone.
  ASSERT_TRUE(WriteTopicMeta(dir_, "ghost", Topic()).ok());
  ASSERT_TRUE(WriteTopicTombstone(dir_, "ghost", {}).ok());
  ASSERT_TRUE(fs::exists(dir_ + "/ghost/0"));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (fs::exists(dir_ + "/ghost")) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the log of 'ghost' stays";
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(bus->DescribeTopic("ghost").status().code(), StatusCode::kNotFound);
}

// Only durable topics take the topic lock: a memory-only topic's delete
// leaves no lock file behind (one per name, never removed).
TEST_F(DurabilityTest, DeletingAMemoryOnlyTopicLeavesNoLockFile) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options());
  ASSERT_TRUE(bus.ok());
  TopicOptions mem = Topic();
  mem.durable = false;
  ASSERT_TRUE(bus->CreateTopic("mem", mem).ok());
  ASSERT_TRUE(bus->DeleteTopic("mem").ok());
  EXPECT_EQ(bus->DeleteTopic("never").code(), StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(dir_ + "/~locks/mem"));
  EXPECT_FALSE(fs::exists(dir_ + "/~locks/never"));
  ASSERT_TRUE(bus->CreateTopic("disk", Topic()).ok());
  ASSERT_TRUE(bus->DeleteTopic("disk").ok());
  EXPECT_TRUE(fs::exists(dir_ + "/~locks/disk"));
}

// Topics created and deleted again and again while the broker handles each
// incarnation on its own ticks: the broker never acts on a directory a newer
// incarnation owns (it used to take a new topic off the bus, or leave its
// directory with settings and no partitions, so it could never be created
// again), and a topic deleted on purpose makes it log no error.
TEST_F(DurabilityTest, TopicsCreatedAndDeletedInALoopStayUsableAndTheBrokerStaysQuiet) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  std::mutex log_mu;
  std::vector<std::string> log;
  SetLogSink([&](LogLevel level, std::string_view line) {
    std::lock_guard<std::mutex> lock(log_mu);
    if (level >= LogLevel::kWarning) log.emplace_back(line);
  });
  constexpr int kThreads = 6;
  constexpr int kRounds = 100;
  std::vector<std::string> problems(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string topic = "loop" + std::to_string(t);
      std::string& bad = problems[t];
      for (int i = 0; i < kRounds && bad.empty(); ++i) {
        if (Status s = bus->CreateTopic(topic, Topic(2)); !s.ok()) {
          bad = "create " + std::to_string(i) + ": " + s.ToString();
          break;
        }
        if (Result<Producer> p = bus->CreateProducer(topic); p.ok()) {
          (void)p->TrySend(std::nullopt, "x");
        } else {
          bad = "producer " + std::to_string(i) + ": " + p.status().ToString();
        }
        if (Status s = bus->DeleteTopic(topic); !s.ok()) {
          bad = "delete " + std::to_string(i) + ": " + s.ToString();
        }
      }
      if (!bad.empty()) return;
      // The last incarnation is persisted from offset 0.
      if (Status s = bus->CreateTopic(topic, Topic(2)); !s.ok()) {
        bad = "last create: " + s.ToString();
        return;
      }
      Result<Producer> p = bus->CreateProducer(topic);
      if (!p.ok()) {
        bad = "last producer: " + p.status().ToString();
        return;
      }
      SendResult r;
      for (int i = 0; i < 50; ++i) {
        r = p->Send(std::nullopt, "last" + std::to_string(i), {}, 0, 5s);
        if (!r.ok()) {
          bad = "last send: " + p->Explain(r).ToString();
          return;
        }
      }
      if (r.offset != 49) bad = "last offset " + std::to_string(r.offset);
      if (Status s = p->WaitDurable(0, r.offset, 10s); !s.ok()) bad = "durable: " + s.ToString();
    });
  }
  for (std::thread& t : threads) t.join();
  SetLogSink(nullptr);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(problems[t], "") << "thread " << t;
  std::lock_guard<std::mutex> lock(log_mu);
  EXPECT_TRUE(log.empty()) << log.size() << " warnings or errors, the first: " << log.front();
}

// A process that opened the bus before any broker recorded a data dir has
// none of its own; its delete still writes the tombstone, into the data dir
// the broker recorded since, so the broker removes the log (and does not
// restore the topic from it later).
TEST_F(DurabilityTest, ADeleteFromAProcessThatOpenedTheBusBeforeTheBrokerRemovesTheLog) {
  ScopedBusName name;
  BusOptions early;  // no data dir, no broker yet
  Result<Bus> first = Bus::Open(*name, early);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->data_dir().empty());
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  ASSERT_TRUE(bus->CreateTopic("gone", Topic()).ok());
  ProduceDurably(*bus, "gone", 100);
  ASSERT_TRUE(first->DeleteTopic("gone").ok());
  EXPECT_TRUE(testing::Eventually([&] { return DataDirEntries(dir_).empty(); }, 5s))
      << DataDirEntries(dir_).size();
}

// The same process creating a topic and reading it from the start: it takes
// the data dir the broker recorded after it opened the bus, so the topic is
// durable and its consumer reads what left the (small) ring from the log.
TEST_F(DurabilityTest, AProcessThatOpenedTheBusBeforeTheBrokerTakesTheBrokersDataDir) {
  ScopedBusName name;
  BusOptions early;  // no data dir, no broker yet
  Result<Bus> first = Bus::Open(*name, early);
  ASSERT_TRUE(first.ok());
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  ASSERT_TRUE(first->CreateTopic("late", Topic()).ok());
  EXPECT_EQ(first->data_dir(), dir_);
  constexpr uint64_t kN = 3000;  // about 500 KB: most left the 64 KiB ring
  ProduceDurably(*first, "late", kN);
  ConsumerOptions co;
  co.start = StartPosition::Earliest();
  Result<Consumer> c = first->CreateConsumer("late", co);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ExpectValuesFromZero(*c, kN);
}

TEST_F(DurabilityTest, RecreatingADeletedTopicWithoutABrokerStartsAfresh) {
  ScopedBusName name;
  {
    Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
    ASSERT_TRUE(bus.ok());
    ASSERT_TRUE(bus->CreateTopic("gone", Topic()).ok());
    ProduceDurably(*bus, "gone", 200);
  }
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->DeleteTopic("gone").ok());
  ASSERT_TRUE(fs::exists(dir_ + "/gone/topic.deleted"));
  // No broker: creating it again removes the old log first, so neither the
  // ring nor a consumer reading the disk sees the old records.
  ExpectFreshTopic(*bus, "gone");
  EXPECT_FALSE(fs::exists(dir_ + "/gone"));  // nothing persisted it yet
  EXPECT_EQ(DataDirEntries(dir_), std::vector<std::string>{});
}

// What a deleter killed between its tombstone and taking the topic off the
// bus leaves: the delete is committed, so a broker finishes it.
TEST_F(DurabilityTest, DeleteInterruptedAfterTheTombstoneIsFinishedByTheBroker) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("gone", Topic()).ok());
  ASSERT_TRUE(bus->CreateTopic("kept", Topic()).ok());
  Result<TopicInfo> gone = bus->DescribeTopic("gone");
  ASSERT_TRUE(gone.ok());
  ASSERT_TRUE(WriteTopicTombstone(dir_, "gone", {gone->generation, gone->created_wall_ns}).ok());
  // A tombstone of an older incarnation does not delete the live "kept".
  Result<TopicInfo> kept = bus->DescribeTopic("kept");
  ASSERT_TRUE(WriteTopicTombstone(dir_, "kept", {kept->generation + 100, 1}).ok());

  Broker broker(*bus);
  AddDurability(broker);
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  ASSERT_TRUE(broker.WaitReady(10s).ok());
  ASSERT_TRUE(testing::Eventually([&] { return !fs::exists(dir_ + "/gone"); }, 5s));
  EXPECT_EQ(bus->DescribeTopic("gone").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(bus->DescribeTopic("kept").ok());
  EXPECT_FALSE(ReadTopicTombstone(dir_, "kept").has_value());  // the stale log was replaced
  ProduceDurably(*bus, "kept", 10);
  Result<uint64_t> on_disk = NextOffsetOnDisk(dir_, "kept", 0);
  ASSERT_TRUE(on_disk.ok()) << on_disk.status().ToString();
  EXPECT_EQ(*on_disk, 10u);
  broker.Stop();
}

// The same with the broker running and persisting the topic already (it
// saw it added before the deleter wrote the tombstone and died): the
// sweep of tombstones finishes the delete, and the log goes.
TEST_F(DurabilityTest, DeleteInterruptedAfterTheTombstoneIsFinishedByTheRunningBroker) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  ASSERT_TRUE(bus->CreateTopic("gone", Topic()).ok());
  ProduceDurably(*bus, "gone", 10);  // persisted: the broker has it
  Result<TopicInfo> gone = bus->DescribeTopic("gone");
  ASSERT_TRUE(gone.ok());
  ASSERT_TRUE(WriteTopicTombstone(dir_, "gone", {gone->generation, gone->created_wall_ns}).ok());
  ASSERT_TRUE(testing::Eventually([&] { return !fs::exists(dir_ + "/gone"); }, 10s));
  EXPECT_EQ(bus->DescribeTopic("gone").status().code(), StatusCode::kNotFound);
}

// A file named like a later segment with a header that is not one (garbage,
// a stray file) is not where the offsets stand: a topic restored over it
// continues after the log's records. It took its offsets from the file's
// name, and a repaired log then kept a gap of ~100,000 offsets that never
// existed. (An empty or zero-headed last segment is what a roll interrupted
// by a crash leaves: its name still counts, as in recovery; offsets handed
// out before the crash are never given out again.)
TEST_F(DurabilityTest, AStrayFileNamedLikeASegmentDoesNotMoveTheNextOffset) {
  ScopedBusName name;
  PersistTopic(*name, Options(/*embedded=*/true), "t", 10);
  const std::string stray = dir_ + "/t/0/00000000000000099999.log";
  std::ofstream(stray, std::ios::binary | std::ios::trunc) << std::string(300, '\x5a');
  Result<uint64_t> on_disk = NextOffsetOnDisk(dir_, "t", 0);
  ASSERT_TRUE(on_disk.ok()) << on_disk.status().ToString();
  EXPECT_EQ(*on_disk, 10u);
  std::ofstream(stray, std::ios::binary | std::ios::trunc) << std::string(64, '\0');
  on_disk = NextOffsetOnDisk(dir_, "t", 0);
  ASSERT_TRUE(on_disk.ok()) << on_disk.status().ToString();
  EXPECT_EQ(*on_disk, 99999u);
  std::ofstream(stray, std::ios::binary | std::ios::trunc) << std::string(300, '\x5a');
  // The shared memory is gone (a reboot): the topic comes back at offset 10.
  ASSERT_TRUE(Bus::Remove(*name).ok());
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", DurabilityTestTopic()).ok());
  Result<Producer> p = bus->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  const SendResult r = p->TrySend(std::nullopt, "next");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.offset, 10u);
}

// A topic that is only in the data dir (a reboot took the shared memory) is
// created again with its settings or not at all: fewer partitions hid the
// records of the others and moved keys, and a memory-only topic left the log
// unread; both were accepted, and topic.meta was overwritten.
TEST_F(DurabilityTest, ATopicOnlyInTheDataDirIsNotCreatedWithOtherSettings) {
  ScopedBusName name;
  PersistTopic(*name, Options(/*embedded=*/true), "t", 10, /*partitions=*/2);
  ASSERT_TRUE(Bus::Remove(*name).ok());
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
  ASSERT_TRUE(bus.ok());
  const Status fewer = bus->CreateTopic("t", Topic(1));
  EXPECT_EQ(fewer.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(fewer.message().find("is in the data dir " + dir_ +
                                 " with other settings: partitions 2 (requested 1)"),
            std::string::npos)
      << fewer.message();
  TopicOptions memory_only = Topic(2);
  memory_only.durable = false;
  const Status no_log = bus->CreateTopic("t", memory_only);
  EXPECT_EQ(no_log.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(no_log.message().find("durable 1 (requested 0)"), std::string::npos)
      << no_log.message();
  EXPECT_EQ(bus->DescribeTopic("t").status().code(), StatusCode::kNotFound);
  Result<TopicOptions> meta = ReadTopicMeta(dir_, "t");
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->partitions, 2u);
  // The same settings: it continues at the log's offsets.
  ASSERT_TRUE(bus->CreateTopic("t", Topic(2)).ok());
  Result<Producer> p = bus->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->TrySend(std::nullopt, "next", {}, 1).offset, 10u);
}

// A topic directory whose settings file is gone is not restored (its
// partition count and ring size are unknown), and the broker says so; the
// log stays, and creating the topic again continues at its offsets.
TEST_F(DurabilityTest, ATopicWithoutItsSettingsFileIsNotRestoredAndTheBrokerSaysSo) {
  ScopedBusName name;
  PersistTopic(*name, Options(/*embedded=*/true), "nometa", 100);
  ASSERT_TRUE(Bus::Remove(*name).ok());
  ASSERT_TRUE(fs::remove(dir_ + "/nometa/topic.meta"));
  std::mutex log_mu;
  std::vector<std::pair<LogLevel, std::string>> log;
  SetLogSink([&](LogLevel level, std::string_view line) {
    std::lock_guard<std::mutex> lock(log_mu);
    log.emplace_back(level, std::string(line));
  });
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  SetLogSink(nullptr);
  {
    std::lock_guard<std::mutex> lock(log_mu);
    const std::string prefix = "runnel broker: cannot restore topic nometa from " + dir_ + ": ";
    EXPECT_NE(std::find_if(log.begin(), log.end(),
                           [&](const auto& l) {
                             return l.first == LogLevel::kError && l.second.starts_with(prefix);
                           }),
              log.end())
        << (log.empty() ? "nothing logged" : log.front().second);
  }
  EXPECT_EQ(bus->DescribeTopic("nometa").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(bus->CreateTopic("nometa", Topic()).ok());
  Result<TopicInfo> info = bus->DescribeTopic("nometa");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->partitions[0].next_offset, 100u);
}

// A broker started on another data dir than the bus's last one says where
// the earlier records are; the same dir by another name does not.
TEST_F(DurabilityTest, ABrokerOnAnotherDataDirNamesTheOneTheBusLastUsed) {
  ScopedBusName name;
  PersistTopic(*name, Options(/*embedded=*/true), "t", 10);
  const std::string other = dir_ + "-other";
  const std::string alias = dir_ + "-alias";
  fs::create_directory_symlink(dir_, alias);
  auto open_and_log = [&](const std::string& data_dir) {
    std::mutex log_mu;
    std::vector<std::string> log;
    SetLogSink([&](LogLevel level, std::string_view line) {
      std::lock_guard<std::mutex> lock(log_mu);
      if (level == LogLevel::kWarning) log.emplace_back(line);
    });
    {
      BusOptions o = Options(/*embedded=*/true);
      o.data_dir = data_dir;
      Result<Bus> bus = Bus::Open(*name, o);
      EXPECT_TRUE(bus.ok());
      if (bus.ok()) {
        EXPECT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
      }
    }
    SetLogSink(nullptr);
    return log;
  };
  const std::string said = "runnel broker: bus '" + *name + "' was last persisted to " + dir_ +
                           ", this broker persists to " + other +
                           ": the records its earlier brokers wrote are in " + dir_;
  std::vector<std::string> log = open_and_log(other);
  EXPECT_NE(std::find(log.begin(), log.end(), said), log.end())
      << (log.empty() ? "nothing logged" : log.front());
  // Back on the first one: named the other way round.
  log = open_and_log(dir_);
  EXPECT_NE(std::find_if(log.begin(), log.end(),
                         [&](const std::string& l) {
                           return l.starts_with("runnel broker: bus '" + *name +
                                                "' was last persisted to " + other + ",");
                         }),
            log.end());
  log = open_and_log(alias);
  EXPECT_EQ(std::find_if(log.begin(), log.end(),
                         [](const std::string& l) {
                           return l.find("was last persisted") != std::string::npos;
                         }),
            log.end());
  std::error_code ec;
  fs::remove_all(other, ec);
  fs::remove(alias, ec);
}

// A settings file that names fewer partitions than have logs (edited, or
// damaged) would hide their records: the topic is not restored, and the
// broker says what to correct.
TEST_F(DurabilityTest, ATopicWhoseSettingsNameFewerPartitionsThanItsLogsIsNotRestored) {
  ScopedBusName name;
  PersistTopic(*name, Options(/*embedded=*/true), "t", 30, /*partitions=*/3);
  ASSERT_TRUE(Bus::Remove(*name).ok());
  std::string meta;
  {
    std::ifstream in(dir_ + "/t/topic.meta");
    meta.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::size_t at = meta.find("partitions=3\n");
  ASSERT_NE(at, std::string::npos) << meta;
  meta.replace(at, 13, "partitions=1\n");
  std::ofstream(dir_ + "/t/topic.meta") << meta;
  std::mutex log_mu;
  std::vector<std::string> log;
  SetLogSink([&](LogLevel level, std::string_view line) {
    std::lock_guard<std::mutex> lock(log_mu);
    if (level == LogLevel::kError) log.emplace_back(line);
  });
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  SetLogSink(nullptr);
  EXPECT_EQ(bus->DescribeTopic("t").status().code(), StatusCode::kNotFound);
  std::lock_guard<std::mutex> lock(log_mu);
  const std::string said = "runnel broker: cannot restore topic t from " + dir_ +
                           ": topic.meta says 1 partition, but partition 2 has a log directory";
  EXPECT_NE(std::find_if(log.begin(), log.end(),
                         [&](const std::string& l) { return l.starts_with(said); }),
            log.end())
      << (log.empty() ? "nothing logged" : log.front());
}

// A partition's log directory removed by hand takes its records with it.
// After a reboot the topic is not restored (its partition would start again
// at offset 0, giving offsets out again); with the bus still there the
// broker does not persist that partition (it started a new log at the ring's
// offset, and the records the ring still held were never written). Both say
// which directory is missing; the other partition goes on.
TEST_F(DurabilityTest, AMissingPartitionDirectoryIsReportedNotStartedAfresh) {
  ScopedBusName name;
  {
    Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
    ASSERT_TRUE(bus.ok());
    ASSERT_TRUE(bus->CreateTopic("t", Topic(2)).ok());
    ProduceDurably(*bus, "t", 100);
  }
  fs::remove_all(dir_ + "/t/1");
  const std::string missing = "the log directory " + dir_ + "/t/1 is missing";
  // The bus is still there: the next broker leaves partition 1 alone.
  {
    std::mutex log_mu;
    std::vector<std::string> log;
    SetLogSink([&](LogLevel, std::string_view line) {
      std::lock_guard<std::mutex> lock(log_mu);
      log.emplace_back(line);
    });
    Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
    ASSERT_TRUE(bus.ok());
    ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
    Result<Producer> p = bus->CreateProducer("t");
    ASSERT_TRUE(p.ok());
    const SendResult r0 = p->Send(std::nullopt, "more", {}, 0, 10s);
    ASSERT_TRUE(r0.ok());
    EXPECT_TRUE(p->WaitDurable(0, r0.offset, 10s).ok());
    const SendResult r1 = p->Send(std::nullopt, "more", {}, 1, 10s);
    ASSERT_TRUE(r1.ok());
    EXPECT_EQ(r1.offset, 100u);
    EXPECT_FALSE(p->WaitDurable(1, r1.offset, 2s).ok());
    SetLogSink(nullptr);
    std::lock_guard<std::mutex> lock(log_mu);
    EXPECT_NE(
        std::find_if(log.begin(), log.end(),
                     [&](const std::string& l) {
                       return l.starts_with("runnel broker: t/1: cannot open its log: " + missing);
                     }),
        log.end());
    EXPECT_FALSE(fs::exists(dir_ + "/t/1"));
  }
  // A reboot: the topic is not brought back with partition 1 at offset 0.
  ASSERT_TRUE(Bus::Remove(*name).ok());
  Result<uint64_t> next = NextOffsetOnDisk(dir_, "t", 1);
  EXPECT_EQ(next.status().code(), StatusCode::kCorruption);
  EXPECT_NE(next.status().message().find(missing), std::string::npos) << next.status().message();
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
  ASSERT_TRUE(bus.ok());
  const Status s = bus->CreateTopic("t", Topic(2));
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find(missing), std::string::npos) << s.message();
  // The way out the message names: an empty directory starts it afresh.
  fs::create_directories(dir_ + "/t/1");
  ASSERT_TRUE(bus->CreateTopic("t", Topic(2)).ok());
}

// A deleter that wrote the tombstone and died in the seqlock of the entry
// (odd, still live): the delete was committed, so the repair removes the
// topic rather than keeping it as a whole live entry (producers would have
// gone on, and a later restart deleted what they wrote).
TEST_F(DurabilityTest, AnOddSeqOverALiveTopicWhoseDeleteWasCommittedIsRemoved) {
  ScopedBusName name;
  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/false));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Topic()).ok());
  ASSERT_TRUE(bus->CreateTopic("kept", Topic()).ok());
  internal::BusCore& core = *bus->core();
  const std::optional<internal::TopicRecord> t = core.directory().FindLiveTopic("t");
  const std::optional<internal::TopicRecord> kept = core.directory().FindLiveTopic("kept");
  ASSERT_TRUE(t && kept);
  ASSERT_TRUE(WriteTopicTombstone(dir_, "t", {t->generation, t->created_wall_ns}).ok());
  auto region = internal::SharedRegion::Open(internal::DirectoryShmName(*name), false);
  ASSERT_TRUE(region.ok());
  auto* layout = reinterpret_cast<internal::DirectoryLayout*>(region->data());
  for (uint32_t slot : {t->slot, kept->slot}) {
    std::atomic_ref<uint64_t>(layout->topics[slot].seq).fetch_or(1);
  }
  ASSERT_TRUE(core.NeedsRepair());
  { ASSERT_TRUE(core.Lock().ok()); }  // repairs
  EXPECT_FALSE(core.NeedsRepair());
  EXPECT_EQ(bus->DescribeTopic("t").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(bus->DescribeTopic("kept").ok());  // no tombstone: kept whole
}

// A topic whose settings file cannot be written (a full disk, here a
// directory in its way) is not persisted until it is: a log without its
// settings would not be restored after a reboot, losing acknowledged records.
// The broker retries every second and persists everything once it can.
TEST_F(DurabilityTest, NothingIsDurableUntilTheTopicsSettingsFileIsWritten) {
  ScopedBusName name;
  fs::create_directories(dir_ + "/t/topic.meta/blocker");
  std::optional<Persisting> opened = OpenPersisting(*name);
  ASSERT_TRUE(opened.has_value());
  Producer* p = &opened->producer;
  const SendResult r = p->Send(std::nullopt, "kept", {}, 0, 10s);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(p->WaitDurable(0, r.offset, 1500ms).ok());
  // Meanwhile producers are told why (an I/O error while it stands).
  EXPECT_EQ(p->WaitDurable(0, r.offset, 0ms).code(), StatusCode::kIoError);
  fs::remove_all(dir_ + "/t/topic.meta");
  ASSERT_TRUE(testing::Eventually([&] { return p->WaitDurable(0, r.offset, 100ms).ok(); }, 10s));
  Result<TopicOptions> meta = ReadTopicMeta(dir_, "t");
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_EQ(meta->ring_bytes, Topic().ring_bytes);
}

// What a broker killed in the middle of removing a deleted topic's log
// leaves, built by hand: the renamed directory half removed, and a tombstoned
// directory whose settings and some partitions are already gone. Neither
// comes back, and the other topic is untouched.
TEST_F(DurabilityTest, HalfRemovedLogsOfDeletedTopicsNeverComeBack) {
  ScopedBusName name;
  {
    Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
    ASSERT_TRUE(bus.ok());
    for (const char* t : {"a", "b", "kept"}) ASSERT_TRUE(bus->CreateTopic(t, Topic(3)).ok());
    for (const char* t : {"a", "b", "kept"}) ProduceDurably(*bus, t, 100);
  }
  ASSERT_TRUE(Bus::Remove(*name).ok());  // and a reboot, so only the disk is left
  // "a": renamed away, then the removal stopped half-way.
  fs::rename(dir_ + "/a", dir_ + "/a~deleted.123.456");
  fs::remove_all(dir_ + "/a~deleted.123.456/1");
  fs::remove(dir_ + "/a~deleted.123.456/topic.meta");
  // "b": tombstoned; its settings and a partition removed.
  ASSERT_TRUE(WriteTopicTombstone(dir_, "b", {}).ok());
  fs::remove(dir_ + "/b/topic.meta");
  fs::remove_all(dir_ + "/b/0");

  Result<Bus> bus = Bus::Open(*name, Options(/*embedded=*/true));
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->embedded_broker()->WaitReady(10s).ok());
  Result<std::vector<TopicInfo>> topics = bus->ListTopics();
  ASSERT_TRUE(topics.ok());
  ASSERT_EQ(topics->size(), 1u);
  EXPECT_EQ((*topics)[0].name, "kept");
  EXPECT_EQ(DataDirEntries(dir_), (std::vector<std::string>{"kept"}));
  Result<TopicInfo> kept = bus->DescribeTopic("kept");
  for (uint32_t p = 0; p < 3; ++p) EXPECT_EQ(kept->partitions[p].next_offset, 100u);
}

// A broker process killed with SIGKILL at random moments while it removes
// deleted topics' logs, round after round: a deleted topic never comes back,
// and the topic that was not deleted keeps every record.
TEST_F(DurabilityTest, BrokerKilledWhileRemovingADeletedTopicNeverBringsItBack) {
  ScopedBusName name;
  auto start_broker = [&]() -> std::pair<pid_t, int> {
    int fds[2];
    if (pipe(fds) != 0) return {-1, -1};
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      Result<Bus> bus = Bus::Open(*name, Options(false));
      if (!bus.ok()) _exit(2);
      Broker broker(*bus);
      AddDurability(broker);
      if (!broker.Start(BrokerMode::kExclusive).ok()) _exit(3);
      if (!broker.WaitReady(30s).ok()) _exit(4);
      const char ready = 'r';
      if (write(fds[1], &ready, 1) != 1) _exit(5);
      for (;;) pause();
    }
    close(fds[1]);
    return {pid, fds[0]};
  };
  auto wait_ready = [](int fd) {
    char c = 0;
    const bool ok = read(fd, &c, 1) == 1;
    close(fd);
    return ok;
  };
  Result<Bus> bus = Bus::Open(*name, Options(false));
  ASSERT_TRUE(bus.ok());
  auto [broker, ready_fd] = start_broker();
  ASSERT_GT(broker, 0);
  ASSERT_TRUE(wait_ready(ready_fd));
  TopicOptions big = Topic(4);
  big.segment_bytes = 64 * 1024;  // many segment files to remove
  ASSERT_TRUE(bus->CreateTopic("kept", big).ok());
  ProduceDurably(*bus, "kept", 500);
  uint64_t seed = static_cast<uint64_t>(getpid());
  for (int round = 0; round < 8; ++round) {
    const std::string gone = "gone" + std::to_string(round);
    ASSERT_TRUE(bus->CreateTopic(gone, big).ok());
    ProduceDurably(*bus, gone, 500);
    ASSERT_TRUE(bus->DeleteTopic(gone).ok());
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    std::this_thread::sleep_for(std::chrono::microseconds((seed >> 33) % 60'000));
    kill(broker, SIGKILL);
    waitpid(broker, nullptr, 0);
    if (round % 2 == 1) {
      ASSERT_TRUE(Bus::Remove(*name).ok());  // a reboot too
    }
    bus = Bus::Open(*name, Options(false));
    ASSERT_TRUE(bus.ok());
    std::tie(broker, ready_fd) = start_broker();
    ASSERT_GT(broker, 0);
    ASSERT_TRUE(wait_ready(ready_fd)) << "round " << round;
    Result<std::vector<TopicInfo>> topics = bus->ListTopics();
    ASSERT_TRUE(topics.ok());
    ASSERT_EQ(topics->size(), 1u) << "round " << round;
    EXPECT_EQ((*topics)[0].name, "kept");
    EXPECT_EQ(DataDirEntries(dir_), (std::vector<std::string>{"kept"})) << "round " << round;
    Result<TopicInfo> kept = bus->DescribeTopic("kept");
    ASSERT_TRUE(kept.ok());
    for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(kept->partitions[p].next_offset, 500u);
  }
  kill(broker, SIGTERM);
  waitpid(broker, nullptr, 0);
  // Every record of "kept" is still on disk.
  for (uint32_t p = 0; p < 4; ++p) {
    Result<uint64_t> on_disk = NextOffsetOnDisk(dir_, "kept", p);
    ASSERT_TRUE(on_disk.ok()) << on_disk.status().ToString();
    EXPECT_EQ(*on_disk, 500u) << p;
  }
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
      AddDurability(broker);
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
