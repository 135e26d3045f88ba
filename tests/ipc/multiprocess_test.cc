// Real processes (the helper executable) sharing one bus.

#include <sys/wait.h>

#include <set>

#include "gtest/gtest.h"
#include "ipc/bus.h"
#include "ipc/internal/bus_core.h"
#include "ipc/internal/names.h"
#include "ipc/internal/partitioner.h"
#include "tests/ipc/test_util.h"

namespace runnel {
namespace {

using namespace std::chrono_literals;
using testing::BusFiles;
using testing::Child;
using testing::Eventually;
using testing::ScopedBusName;

TEST(MultiProcess, ProducersAndConsumersInSeparateProcessesSeeEveryRecordOnceInOrder) {
  ScopedBusName name;
  BusOptions bo;
  bo.embedded_broker = true;
  auto bus = Bus::Open(*name, bo);
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  TopicOptions alpha;
  alpha.partitions = 4;
  alpha.ring_bytes = 2 << 20;  // holds everything: no overrun whatever the scheduling
  TopicOptions beta = alpha;
  beta.partitions = 2;
  ASSERT_TRUE(bus->CreateTopic("alpha", alpha).ok());
  ASSERT_TRUE(bus->CreateTopic("beta", beta).ok());

  constexpr int kAlphaEach = 20000;
  constexpr int kBetaEach = 8000;
  std::vector<std::unique_ptr<Child>> consumers;
  for (int i = 0; i < 2; ++i) {
    consumers.push_back(std::make_unique<Child>(std::vector<std::string>{
        "consume", *name, "alpha", "2", std::to_string(kAlphaEach), "40000"}));
    consumers.push_back(std::make_unique<Child>(std::vector<std::string>{
        "consume", *name, "beta", "2", std::to_string(kBetaEach), "40000"}));
  }
  for (auto& c : consumers) ASSERT_TRUE(c->WaitForLine("ready", 10s));
  std::vector<std::unique_ptr<Child>> producers;
  for (int id = 0; id < 2; ++id) {
    producers.push_back(std::make_unique<Child>(std::vector<std::string>{
        "produce", *name, "alpha", std::to_string(id), std::to_string(kAlphaEach), "64"}));
    producers.push_back(std::make_unique<Child>(std::vector<std::string>{
        "produce", *name, "beta", std::to_string(id), std::to_string(kBetaEach), "64", "keyed"}));
  }
  for (auto& p : producers) {
    std::optional<std::string> line = p->ReadLine(40s);
    EXPECT_TRUE(line && line->rfind("done", 0) == 0) << line.value_or("(no output)");
    EXPECT_EQ(p->ExitCode(5s), 0);
  }
  for (std::size_t i = 0; i < consumers.size(); ++i) {
    std::optional<std::string> line = consumers[i]->ReadLine(40s);
    const int expected = (i % 2 == 0 ? kAlphaEach : kBetaEach) * 2;
    EXPECT_EQ(line.value_or("(no output)"), "ok " + std::to_string(expected));
    EXPECT_EQ(consumers[i]->ExitCode(5s), 0);
  }
  auto info = bus->DescribeTopic("alpha");
  ASSERT_TRUE(info.ok());
  uint64_t total = 0;
  for (const PartitionInfo& p : info->partitions) total += p.next_offset;
  EXPECT_EQ(total, 2u * kAlphaEach);
}

TEST(MultiProcess, KeyHashPartitioningIsTheSameInEveryProcess) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  TopicOptions o;
  o.partitions = 5;
  o.ring_bytes = 256 * 1024;
  ASSERT_TRUE(bus->CreateTopic("keys", o).ok());
  auto consumer = bus->CreateConsumer("keys");
  ASSERT_TRUE(consumer.ok());
  Child child({"keyed-send", *name, "keys", "500"});
  ASSERT_TRUE(child.WaitForLine("done", 20s));
  EXPECT_EQ(child.ExitCode(5s), 0);
  int seen = 0;
  std::set<uint32_t> used;
  consumer->Poll(
      [&](const ConsumerRecord& r) {
        ++seen;
        used.insert(r.partition());
        EXPECT_EQ(r.key(), r.value());
        EXPECT_EQ(r.partition(), internal::KeyPartition(r.key(), 5)) << r.key();
      },
      1000);
  EXPECT_EQ(seen, 500);
  EXPECT_EQ(used.size(), 5u);
}

TEST(MultiProcess, TopicCreateDeleteRacesLeaveAConsistentDirectory) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  std::vector<std::unique_ptr<Child>> racers;
  for (int i = 0; i < 3; ++i) {
    racers.push_back(std::make_unique<Child>(
        std::vector<std::string>{"topic-race", *name, "300", std::to_string(1000 + i)}));
  }
  for (auto& r : racers) {
    std::optional<std::string> line = r->ReadLine(40s);
    EXPECT_EQ(line.value_or("(no output)"), "done");
    EXPECT_EQ(r->ExitCode(5s), 0);
  }
  EXPECT_FALSE(bus->core()->NeedsRepair());
  EXPECT_EQ(bus->Info()->clients, 0u);  // every racer's clients were closed
  // Exactly the rings of the live topics exist, plus the directory and lock.
  std::set<std::string> expected = {"runnel." + *name + ".dir", "runnel." + *name + ".lock"};
  auto topics = bus->ListTopics();
  ASSERT_TRUE(topics.ok());
  for (const TopicInfo& t : *topics) {
    for (uint32_t p = 0; p < t.options.partitions; ++p) {
      expected.insert(internal::RingShmName(*name, t.name, p, t.generation));
    }
    auto d = bus->DescribeTopic(t.name);
    EXPECT_TRUE(d.ok()) << d.status().ToString();
  }
  const std::vector<std::string> files = BusFiles(*name);
  EXPECT_EQ(std::set<std::string>(files.begin(), files.end()), expected);
}

TEST(MultiProcess, BusIsReopenedAsIsAfterEveryProcessDied) {
  ScopedBusName name;
  {
    Child creator({"create-produce-exit", *name, "t", "100"});
    ASSERT_TRUE(creator.WaitForLine("done", 20s));
    EXPECT_EQ(creator.ExitCode(5s), 0);
  }
  {
    // A consumer that dies without closing leaves a registration behind.
    Child consumer({"consumer-wait", *name, "t"});
    ASSERT_TRUE(consumer.WaitForLine("ready", 20s));
    consumer.Kill();
  }
  BusOptions bo;
  bo.embedded_broker = true;
  bo.create_if_missing = false;
  auto bus = Bus::Open(*name, bo);
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  auto c = bus->CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  int seen = 0;
  c->Poll(
      [&](const ConsumerRecord& r) {
        uint32_t producer = 0;
        uint64_t seq = 0;
        EXPECT_TRUE(testing::ParseValue(r.value(), &producer, &seq));
        ++seen;
      },
      1000);
  EXPECT_EQ(seen, 100);
  // The dead consumer's registration is reaped by the broker.
  EXPECT_TRUE(Eventually([&] { return bus->DescribeTopic("t")->consumers.size() == 1; }, 3s));
  EXPECT_GE(bus->Info()->clients_reaped, 1u);
}

}  // namespace
}  // namespace runnel
