// Producers and consumers in one process: the API contract, partitioning,
// back-pressure, overrun reporting, seeking, waiting, SPSC exclusivity and
// the cold-reader seam.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "core/wait.h"
#include "gtest/gtest.h"
#include "ipc/bus.h"
#include "ipc/internal/bus_core.h"
#include "ipc/internal/cold_reader.h"
#include "ipc/internal/partitioner.h"
#include "persistence/persister.h"
#include "tests/ipc/test_util.h"

namespace runnel {
namespace {

using namespace std::chrono_literals;
using testing::ScopedBusName;

class ProducerConsumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bus = Bus::Open(*name_);
    ASSERT_TRUE(bus.ok()) << bus.status().ToString();
    bus_.emplace(std::move(*bus));
  }
  Status Create(const std::string& topic, uint32_t partitions, uint64_t ring = 64 * 1024,
                bool spsc = false) {
    TopicOptions o;
    o.partitions = partitions;
    o.ring_bytes = ring;
    o.single_producer = spsc;
    return bus_->CreateTopic(topic, o);
  }

  ScopedBusName name_;
  std::optional<Bus> bus_;
};

struct Got {
  uint32_t partition;
  uint64_t offset;
  bool has_key;
  std::string key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
};

std::vector<Got> Drain(Consumer& c, uint32_t limit = 100000) {
  std::vector<Got> out;
  c.Poll(
      [&](const ConsumerRecord& r) {
        Got g{r.partition(),          r.offset(), r.has_key(), std::string(r.key()),
              std::string(r.value()), {}};
        for (HeaderIterator it = r.headers(); it.valid(); it.Next()) {
          g.headers.emplace_back(std::string(it->name), std::string(it->value));
        }
        out.push_back(std::move(g));
      },
      limit);
  return out;
}

TEST_F(ProducerConsumerTest, SendThenPollDeliversExactKeyHeadersValueAndOffsets) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(p.ok() && c.ok());
  const Header headers[] = {{"trace", "abc"}, {"empty", ""}};
  SendResult r0 = p->TrySend("key0", "value0", headers);
  SendResult r1 = p->TrySend(std::nullopt, "no key");
  SendResult r2 = p->TrySend(std::string_view(""), std::string(5000, 'z'));
  ASSERT_TRUE(r0.ok() && r1.ok() && r2.ok());
  EXPECT_EQ(r0.offset, 0u);
  EXPECT_EQ(r1.offset, 1u);
  EXPECT_EQ(r2.offset, 2u);
  const std::vector<Got> got = Drain(*c);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(got[0].has_key);
  EXPECT_EQ(got[0].key, "key0");
  EXPECT_EQ(got[0].value, "value0");
  ASSERT_EQ(got[0].headers.size(), 2u);
  EXPECT_EQ(got[0].headers[0], std::make_pair(std::string("trace"), std::string("abc")));
  EXPECT_FALSE(got[1].has_key);
  EXPECT_EQ(got[1].value, "no key");
  EXPECT_TRUE(got[2].has_key);  // an empty key is not "no key"
  EXPECT_EQ(got[2].value, std::string(5000, 'z'));
  EXPECT_EQ(got[2].offset, 2u);
  EXPECT_EQ(*c->Position(0), 3u);
}

TEST_F(ProducerConsumerTest, ZeroCopyClaimCommitAndAbortSkipsTheAbortedOffset) {
  ASSERT_TRUE(Create("t", 2).ok());
  auto p = bus_->CreateProducer("t");
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(p.ok() && c.ok());
  ProducerClaim a = p->TryClaim(1, 3, 0, 5, true);
  ASSERT_TRUE(a.ok());
  std::memcpy(a.key().data(), "abc", 3);
  std::memcpy(a.value().data(), "hello", 5);
  a.set_timestamp(12345);
  EXPECT_EQ(p->Commit(a), SendStatus::kOk);
  EXPECT_EQ(p->Commit(a), SendStatus::kInvalid);  // already committed
  ProducerClaim b = p->TryClaim(1, 0, 0, 5, false);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(p->Abort(b), SendStatus::kOk);
  { ProducerClaim dropped = p->TryClaim(1, 0, 0, 5, false); }  // destroyed: aborted
  ProducerClaim over = p->TryClaim(1, 0, 0, 5, false);
  ASSERT_TRUE(over.ok());
  over = p->TryClaim(1, 0, 0, 5, false);  // assigned over: the first one is aborted
  ASSERT_TRUE(over.ok());
  over = ProducerClaim();  // and so is the second
  ASSERT_TRUE(p->TrySend(std::nullopt, "after", {}, 1).ok());
  int64_t ts = 0;
  std::vector<uint64_t> offsets;
  c->Poll(
      [&](const ConsumerRecord& r) {
        offsets.push_back(r.offset());
        if (r.offset() == 0) ts = r.timestamp_ns();
      },
      10);
  EXPECT_EQ(offsets, (std::vector<uint64_t>{0, 5}));
  EXPECT_EQ(ts, 12345);
  auto info = bus_->DescribeTopic("t");
  EXPECT_EQ(info->partitions[1].aborted_claims, 4u);
}

// A zero-copy claim whose headers() holds bytes that are not headers is
// refused at Commit (kInvalid, aborted), not published to stop every
// consumer and the broker at it.
TEST_F(ProducerConsumerTest, CommitRefusesMalformedHeaderBytes) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(p.ok() && c.ok());
  ProducerClaim bad = p->TryClaim(0, 0, 4, 1, false);
  ASSERT_TRUE(bad.ok());
  const std::byte garbage[4] = {std::byte{0xff}, std::byte{0xff}, std::byte{0}, std::byte{0}};
  std::memcpy(bad.headers().data(), garbage, 4);
  EXPECT_EQ(p->Commit(bad), SendStatus::kInvalid);
  SendResult invalid;
  invalid.status = SendStatus::kInvalid;
  EXPECT_NE(p->Explain(invalid).message().find("are not headers"), std::string::npos)
      << p->Explain(invalid).message();
  ASSERT_TRUE(p->TrySend(std::nullopt, "after", {}, 0).ok());
  std::vector<std::pair<uint64_t, std::string>> got;
  const PollResult r = c->Poll(
      [&](const ConsumerRecord& rec) { got.emplace_back(rec.offset(), std::string(rec.value())); },
      10);
  EXPECT_EQ(r.status, PollStatus::kOk);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, 1u);
  EXPECT_EQ(got[0].second, "after");
  EXPECT_EQ(bus_->DescribeTopic("t")->partitions[0].aborted_claims, 1u);
}

// PollFor with limit 0 takes nothing, so it does not wait either (it spun on
// the record that was there until its timeout ran out).
TEST_F(ProducerConsumerTest, PollForWithALimitOfZeroReturnsAtOnce) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(p.ok() && c.ok());
  ASSERT_TRUE(p->TrySend(std::nullopt, "there", {}, 0).ok());
  const auto start = std::chrono::steady_clock::now();
  const PollResult r = c->PollFor([](const ConsumerRecord&) {}, 0, std::chrono::seconds(30));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(r.status, PollStatus::kOk);
  EXPECT_EQ(r.records, 0u);
  std::vector<std::string> got;
  (void)c->Poll([&](const ConsumerRecord& rec) { got.emplace_back(rec.value()); }, 10);
  EXPECT_EQ(got, std::vector<std::string>{"there"});
}

// Batching on a single_producer topic: deferred records stay invisible until
// Publish, then arrive in order with exact bytes, in every partition.
TEST_F(ProducerConsumerTest, DeferredCommitsAppearAtPublishInOrder) {
  ASSERT_TRUE(Create("t", 2, 64 * 1024, /*spsc=*/true).ok());
  auto p = bus_->CreateProducer("t");
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(p.ok() && c.ok());
  for (uint32_t i = 0; i < 6; ++i) {
    const std::string v = "v" + std::to_string(i);
    ProducerClaim claim = p->TryClaim(i % 2, 0, 0, static_cast<uint32_t>(v.size()), false);
    ASSERT_TRUE(claim.ok());
    std::memcpy(claim.value().data(), v.data(), v.size());
    ASSERT_EQ(p->CommitDeferred(claim), SendStatus::kOk);
  }
  EXPECT_TRUE(Drain(*c).empty());
  ProducerClaim none;
  EXPECT_EQ(p->CommitDeferred(none), SendStatus::kInvalid);
  EXPECT_EQ(p->Publish(), SendStatus::kOk);
  std::vector<Got> got = Drain(*c);
  ASSERT_EQ(got.size(), 6u);
  std::sort(got.begin(), got.end(), [](const Got& a, const Got& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  const char* want[] = {"v0", "v2", "v4", "v1", "v3", "v5"};
  for (uint32_t i = 0; i < 6; ++i) {
    EXPECT_EQ(got[i].partition, i / 3);
    EXPECT_EQ(got[i].offset, i % 3);
    EXPECT_EQ(got[i].value, want[i]);
  }
  // A Commit publishes its partition's pending batch with it; the
  // destructor publishes what is left.
  ProducerClaim a = p->TryClaim(0, 0, 0, 1, false);
  ASSERT_TRUE(a.ok());
  a.value()[0] = std::byte{'a'};
  ASSERT_EQ(p->CommitDeferred(a), SendStatus::kOk);
  ProducerClaim b = p->TryClaim(1, 0, 0, 1, false);
  ASSERT_TRUE(b.ok());
  b.value()[0] = std::byte{'b'};
  ASSERT_EQ(p->CommitDeferred(b), SendStatus::kOk);
  ProducerClaim a2 = p->TryClaim(0, 0, 0, 2, false);
  ASSERT_TRUE(a2.ok());
  std::memcpy(a2.value().data(), "a2", 2);
  ASSERT_EQ(p->Commit(a2), SendStatus::kOk);
  got = Drain(*c);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].value, "a");
  EXPECT_EQ(got[1].value, "a2");
  { Producer gone = std::move(*p); }  // ~Producer publishes "b"
  got = Drain(*c);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "b");
  EXPECT_EQ(got[0].partition, 1u);
}

TEST_F(ProducerConsumerTest, RecordsWithoutKeyGoRoundRobinOverTheProducersPartitions) {
  ASSERT_TRUE(Create("t", 4).ok());
  ProducerOptions po;
  po.partitions = {1, 3};
  auto p = bus_->CreateProducer("t", po);
  ASSERT_TRUE(p.ok());
  std::vector<uint32_t> used;
  for (int i = 0; i < 6; ++i) {
    SendResult r = p->TrySend(std::nullopt, "v");
    ASSERT_TRUE(r.ok());
    used.push_back(r.partition);
  }
  // It starts at either: a producer's start depends on its client id.
  const std::vector<uint32_t> from1 = {1, 3, 1, 3, 1, 3};
  const std::vector<uint32_t> from3 = {3, 1, 3, 1, 3, 1};
  EXPECT_TRUE(used == from1 || used == from3) << ::testing::PrintToString(used);
  SendResult bad = p->TrySend(std::nullopt, "v", {}, 0);
  EXPECT_EQ(bad.status, SendStatus::kUnknownPartition);
  EXPECT_EQ(p->Explain(bad).message(),
            "topic 't' has 4 partitions and this producer writes partitions [1,3]; partition 0 "
            "is not one of them");
  EXPECT_EQ(p->TrySend(std::nullopt, "v", {}, 9).status, SendStatus::kUnknownPartition);
  ProducerOptions wrong;
  wrong.partitions = {4};
  EXPECT_EQ(bus_->CreateProducer("t", wrong).status().code(), StatusCode::kInvalidArgument);
}

// Producers that send one record each, one after another (a `runnel produce`
// per event), spread over the partitions: every one started at partition 0.
TEST_F(ProducerConsumerTest, ProducersSendingOneRecordEachSpreadOverThePartitions) {
  ASSERT_TRUE(Create("t", 4).ok());
  std::vector<int> per_partition(4, 0);
  for (int i = 0; i < 8; ++i) {
    auto p = bus_->CreateProducer("t");
    ASSERT_TRUE(p.ok());
    const SendResult r = p->TrySend(std::nullopt, "event");
    ASSERT_TRUE(r.ok());
    ++per_partition[r.partition];
  }
  EXPECT_EQ(per_partition, (std::vector<int>{2, 2, 2, 2}));
}

TEST_F(ProducerConsumerTest, KeyedRecordsGoToTheKafkaPartition) {
  ASSERT_TRUE(Create("t", 5).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 200; ++i) {
    const std::string key = "user-" + std::to_string(i);
    SendResult r = p->TrySend(key, "v");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.partition, internal::KeyPartition(key, 5));
    EXPECT_EQ(r.partition, p->KeyPartition(key));
  }
  // The hand-computed Kafka value for "foobar" over 5 partitions.
  EXPECT_EQ(p->KeyPartition("foobar"), (static_cast<uint32_t>(-790332482) & 0x7fffffffu) % 5);
}

TEST_F(ProducerConsumerTest, TooLargeRecordIsRefusedWithTheLimitInTheMessage) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  const uint32_t max = p->max_record_bytes();
  EXPECT_EQ(max, 64u * 1024 / 4 - kRecordOverheadBytes);
  EXPECT_TRUE(p->TrySend(std::nullopt, std::string(max, 'a')).ok());
  SendResult r = p->TrySend("k", std::string(max, 'a'));
  EXPECT_EQ(r.status, SendStatus::kTooLarge);
  const Status s = p->Explain(r);
  EXPECT_NE(s.message().find(std::to_string(max + 1) + " bytes"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("max record size " + std::to_string(max)), std::string::npos);
  // And what to do about it.
  EXPECT_NE(s.message().find("re-create the topic with a larger max record size"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(p->TryClaim(0, 0, 0, max + 1, false).status(), SendStatus::kTooLarge);
  EXPECT_EQ(p->TrySend(std::string(70000, 'k'), "v").status, SendStatus::kInvalid);
}

// kInvalid has four causes; Explain names the one that happened, with the size.
TEST_F(ProducerConsumerTest, InvalidRecordsAreExplainedByTheirCause) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  SendResult r = p->TrySend(std::string(70000, 'k'), "v");
  ASSERT_EQ(r.status, SendStatus::kInvalid);
  EXPECT_EQ(p->Explain(r).message(), "key of 70000 bytes is longer than the limit of 65535 bytes");
  const std::string long_value(65536, 'x');
  const Header one_long[] = {{"h", long_value}};
  r = p->TrySend(std::nullopt, "v", one_long);
  ASSERT_EQ(r.status, SendStatus::kInvalid);
  EXPECT_EQ(p->Explain(r).message(),
            "a header name or value of 65536 bytes is longer than the limit of 65535 bytes");
  const std::string half(40000, 'y');
  const Header two[] = {{"a", half}, {"b", half}};
  r = p->TrySend(std::nullopt, "v", two);
  ASSERT_EQ(r.status, SendStatus::kInvalid);
  EXPECT_EQ(p->Explain(r).code(), StatusCode::kInvalidArgument);
  EXPECT_NE(p->Explain(r).message().find("the headers take 80010 bytes encoded"), std::string::npos)
      << p->Explain(r).message();
  ProducerClaim claim = p->TryClaim(0, 70000, 0, 1, true);
  EXPECT_EQ(claim.status(), SendStatus::kInvalid);
  EXPECT_EQ(p->Explain({claim.status(), 0, 0}).message(),
            "key of 70000 bytes is longer than the limit of 65535 bytes");
  ProducerClaim good = p->TryClaim(0, 0, 0, 1, false);
  ASSERT_TRUE(good.ok());
  ASSERT_EQ(p->Commit(good), SendStatus::kOk);
  const SendStatus again = p->Commit(good);
  ASSERT_EQ(again, SendStatus::kInvalid);
  EXPECT_NE(p->Explain({again, 0, 0}).message().find("no active claim"), std::string::npos);
}

TEST_F(ProducerConsumerTest, ACommitThroughAnotherProducerIsInvalidAndLeavesTheClaimAlone) {
  ASSERT_TRUE(Create("t", 2).ok());
  ASSERT_TRUE(Create("u", 1).ok());
  Result<Producer> a = bus_->CreateProducer("t");
  Result<Producer> b = bus_->CreateProducer("t");
  Result<Producer> u = bus_->CreateProducer("u");
  ASSERT_TRUE(a.ok() && b.ok() && u.ok());
  ProducerClaim claim = a->TryClaim(1, 0, 0, 4, false);
  ASSERT_TRUE(claim.ok());
  std::memcpy(claim.value().data(), "mine", 4);
  for (Producer* other : {&*b, &*u}) {
    EXPECT_EQ(other->Commit(claim), SendStatus::kInvalid);
    EXPECT_EQ(other->Explain({SendStatus::kInvalid, 1, 0}).message(),
              "the claim was made by another Producer: commit or abort it through the one "
              "that made it (this call left it untouched)");
    EXPECT_EQ(other->CommitDeferred(claim), SendStatus::kInvalid);
    EXPECT_EQ(other->Abort(claim), SendStatus::kInvalid);
    EXPECT_TRUE(claim.ok());
  }
  ASSERT_EQ(a->Commit(claim), SendStatus::kOk);
  EXPECT_EQ(a->Commit(claim), SendStatus::kInvalid);  // done: no active claim
  ConsumerOptions co;
  co.partitions = {1};
  co.start = StartPosition::Earliest();
  Result<Consumer> c = bus_->CreateConsumer("t", co);
  ASSERT_TRUE(c.ok());
  std::vector<std::string> got;
  (void)c->PollFor([&](const ConsumerRecord& r) { got.emplace_back(r.value()); }, 10, 1s);
  EXPECT_EQ(got, std::vector<std::string>{"mine"});
}

// A moved-from Bus, Producer or Consumer answers every call with an error
// (kFailedPrecondition, or the hot paths' kUnknownPartition / kMovedFrom),
// never by following the pointer the move left null, also past the periodic
// topic check that every 1024th send and 256th poll makes.
TEST_F(ProducerConsumerTest, MovedFromHandlesReportErrorsInsteadOfCrashing) {
  ASSERT_TRUE(Create("t", 2).ok());
  Result<Producer> p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  Producer moved_to = std::move(*p);
  Producer& from = *p;  // NOLINT(bugprone-use-after-move): what is tested
  for (int i = 0; i < 3000; ++i) {
    ASSERT_EQ(from.TrySend(std::nullopt, "v").status, SendStatus::kUnknownPartition);
    ASSERT_EQ(from.TrySend("key", "v", {}, 1).status, SendStatus::kUnknownPartition);
    ASSERT_EQ(from.TryClaim(0, 0, 0, 1, false).status(), SendStatus::kUnknownPartition);
  }
  EXPECT_EQ(from.CheckTopic().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(from.WaitDurable(0, 0, 0ms).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(from.Explain({SendStatus::kUnknownPartition, 0, 0}).message(),
            "this Producer was moved from: use the object it was moved to");
  EXPECT_EQ(from.KeyPartition("key"), 0u);
  EXPECT_TRUE(moved_to.TrySend(std::nullopt, "still works").ok());

  Result<Consumer> c = bus_->CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  Consumer consumer = std::move(*c);
  Consumer& gone = *c;  // NOLINT(bugprone-use-after-move)
  for (int i = 0; i < 600; ++i) {
    const PollResult r = gone.Poll([](const ConsumerRecord&) { ADD_FAILURE(); }, 10);
    ASSERT_EQ(r.records, 0u);
    ASSERT_EQ(r.status, PollStatus::kMovedFrom);
  }
  EXPECT_EQ(gone.PollFor([](const ConsumerRecord&) { ADD_FAILURE(); }, 10, 1h).status,
            PollStatus::kMovedFrom);  // at once, not after an hour
  EXPECT_EQ(PollStatusName(PollStatus::kMovedFrom), "moved from");
  EXPECT_EQ(gone.Seek(0, 0).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(gone.Position(0).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(gone.CheckTopic().code(), StatusCode::kFailedPrecondition);
  int got = 0;
  (void)consumer.PollFor([&](const ConsumerRecord&) { ++got; }, 10, 1s);
  EXPECT_EQ(got, 1);

  Bus bus = std::move(*bus_);
  Bus& old = *bus_;  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(old.CreateProducer("t").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(old.CreateConsumer("t").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(old.CreateTopic("u", TopicOptions{}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(old.DeleteTopic("t").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(old.DescribeTopic("t").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(old.ListTopics().status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(old.Info().status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(old.name(), "");
  EXPECT_TRUE(bus.DescribeTopic("t").ok());
  *bus_ = std::move(bus);  // the fixture's TearDown uses it
}

// A durable topic's record must fit in one segment: the log never splits a
// frame, so a larger one would stop the partition's persistence for good.
TEST_F(ProducerConsumerTest, ADurableTopicsMaxRecordFitsInASegment) {
  TopicOptions o;
  o.segment_bytes = 64 * 1024;
  o.max_record_bytes = 100'000;
  const Status s = bus_->CreateTopic("big", o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("does not fit in a segment of 65536 bytes (at most 65416"),
            std::string::npos)
      << s.ToString();
  o.max_record_bytes = 0;  // the default shrinks to fit
  ASSERT_TRUE(bus_->CreateTopic("fits", o).ok());
  Result<TopicInfo> info = bus_->DescribeTopic("fits");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->options.max_record_bytes, 65416u);
  o.durable = false;  // a ring-only topic has no segments
  o.max_record_bytes = 100'000;
  EXPECT_TRUE(bus_->CreateTopic("ring-only", o).ok());
  // Its limit is the ring's, and the error says so (it named a segment).
  o.ring_bytes = 64 * 1024;
  o.max_record_bytes = 32'768;
  const Status ring = bus_->CreateTopic("small-ring", o);
  EXPECT_EQ(ring.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(ring.message().find("is too large for a ring of 65536 bytes (at most 32712"),
            std::string::npos)
      << ring.ToString();
}

// TryClaim's refusals carry their status and claim nothing; a good claim
// after them lands in the partition asked for, with the next offset.
TEST_F(ProducerConsumerTest, TryClaimRefusalsClaimNothing) {
  ASSERT_TRUE(Create("t", 2).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  ProducerClaim bad = p->TryClaim(7, 0, 0, 4, false);
  EXPECT_EQ(bad.status(), SendStatus::kUnknownPartition);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(p->Commit(bad), SendStatus::kInvalid);
  ProducerClaim big = p->TryClaim(1, 0, 0, p->max_record_bytes() + 1, false);
  EXPECT_EQ(big.status(), SendStatus::kTooLarge);
  EXPECT_EQ(big.partition(), 1u);
  ProducerClaim good = p->TryClaim(1, 0, 0, 4, false);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.partition(), 1u);
  EXPECT_EQ(good.offset(), 0u);
  std::memcpy(good.value().data(), "good", 4);
  ASSERT_EQ(p->Commit(good), SendStatus::kOk);
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  std::vector<std::pair<uint32_t, std::string>> got;
  (void)c->Poll([&](const ConsumerRecord& r) { got.emplace_back(r.partition(), r.value()); }, 10);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], std::make_pair(1u, std::string("good")));
}

// A gating reader (what persistence will be) that never releases makes the
// ring fill: TrySend says kFull, Send times out; releasing lets it through.
TEST_F(ProducerConsumerTest, BackPressureIsFullThenSendWaitsForSpaceUntilTimeout) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto topic = bus_->core()->directory().FindLiveTopic("t");
  auto mapping = bus_->core()->MapTopic(*topic);
  ASSERT_TRUE(mapping.ok());
  const Ring ring = (*mapping)->rings[0];
  auto slot = ring.AcquireGatingSlot(42, ring.tail());
  ASSERT_TRUE(slot.ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  const std::string value(1000, 'v');
  SendResult r;
  int sent = 0;
  while ((r = p->TrySend(std::nullopt, value)).ok()) ++sent;
  EXPECT_EQ(r.status, SendStatus::kFull);
  EXPECT_GT(sent, 50);
  EXPECT_EQ(p->Explain(r).code(), StatusCode::kResourceExhausted);
  const int64_t t0 = MonotonicNanos();
  r = p->Send(std::nullopt, value, {}, kAnyPartition, 50ms);
  EXPECT_EQ(r.status, SendStatus::kTimeout);
  EXPECT_GE(MonotonicNanos() - t0, 50'000'000);

  std::thread releaser([&] {
    std::this_thread::sleep_for(30ms);
    ring.AdvanceGatingSlot(*slot, ring.tail());
  });
  r = p->Send(std::nullopt, value, {}, kAnyPartition, 5s);
  releaser.join();
  EXPECT_TRUE(r.ok()) << SendStatusName(r.status);
  ring.ReleaseGatingSlot(*slot);
}

// A broker that cannot write (full disk) holds its gating slot: producers of
// the partition see kFull, and Explain says why and what to do.
TEST_F(ProducerConsumerTest, AFullRingBehindABrokerThatCannotWriteIsExplainedAsAFullDisk) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto topic = bus_->core()->directory().FindLiveTopic("t");
  auto mapping = bus_->core()->MapTopic(*topic);
  ASSERT_TRUE(mapping.ok());
  const Ring ring = (*mapping)->rings[0];
  auto slot = ring.AcquireGatingSlot(kPersisterGatingOwner, ring.tail());
  ASSERT_TRUE(slot.ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  SendResult r;
  while ((r = p->TrySend(std::nullopt, std::string(1000, 'v'))).ok()) {
  }
  ASSERT_EQ(r.status, SendStatus::kFull);
  // No broker runs here: that is the reason given.
  EXPECT_NE(p->Explain(r).message().find("no broker is running to persist it"), std::string::npos)
      << p->Explain(r).message();
  ring.SetGatingError(*slot, ENOSPC);
  const Status why = p->Explain(r);
  EXPECT_EQ(why.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(why.message().find("the broker cannot write the partition's log: No space left on "
                               "device (free disk space"),
            std::string::npos)
      << why.message();
  ring.ReleaseGatingSlot(*slot);
}

TEST_F(ProducerConsumerTest, AnOpenClaimARingBackHoldsTheOtherProducersAndIsExplained) {
  // A memory-only topic with two producers: no gating reader.
  ASSERT_TRUE(Create("t", 1).ok());
  auto slow = bus_->CreateProducer("t");
  auto fast = bus_->CreateProducer("t");
  ASSERT_TRUE(slow.ok() && fast.ok());
  ProducerClaim held = slow->TryClaim(0, 0, 0, 8, false);
  ASSERT_TRUE(held.ok());
  std::memcpy(held.value().data(), "held-one", 8);
  const std::string value(1000, 'v');
  SendResult r;
  int sent = 0;
  while ((r = fast->TrySend(std::nullopt, value)).ok()) ++sent;
  EXPECT_EQ(r.status, SendStatus::kFull);
  EXPECT_GT(sent, 50);
  const Status why = fast->Explain(r);
  EXPECT_EQ(why.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(why.ToString().find("still open"), std::string::npos) << why.ToString();
  std::thread committer([&] {
    std::this_thread::sleep_for(30ms);
    EXPECT_EQ(slow->Commit(held), SendStatus::kOk);
  });
  r = fast->Send(std::nullopt, value, {}, kAnyPartition, 5s);
  committer.join();
  EXPECT_TRUE(r.ok()) << SendStatusName(r.status);
}

TEST_F(ProducerConsumerTest, OverrunIsReportedWithCountsAndTheConsumerContinues) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  std::vector<OverrunInfo> overruns;
  ConsumerOptions co;
  co.on_overrun = [&](const OverrunInfo& o) { overruns.push_back(o); };
  auto c = bus_->CreateConsumer("t", co);
  ASSERT_TRUE(p.ok() && c.ok());
  const std::string value(200, 'v');  // 240-byte frames: ~273 per 64 KiB lap
  const int total = 2000;
  for (int i = 0; i < total; ++i) ASSERT_TRUE(p->TrySend(std::nullopt, value).ok());
  uint64_t delivered = 0;
  uint64_t last = 0;
  PollResult r = c->Poll(
      [&](const ConsumerRecord& rec) {
        ++delivered;
        last = rec.offset();
      },
      100000);
  EXPECT_EQ(r.status, PollStatus::kOverrun);
  EXPECT_GT(r.lost_records, 1000u);
  EXPECT_GT(r.lost_bytes, 1000u * 240);
  ASSERT_EQ(overruns.size(), 1u);
  EXPECT_EQ(overruns[0].partition, 0u);
  EXPECT_EQ(overruns[0].from_offset, 0u);
  EXPECT_EQ(overruns[0].to_offset, overruns[0].lost_records);
  EXPECT_EQ(c->overruns(), 1u);
  // It continues at the oldest record still in the ring; nothing is lost
  // without being counted.
  for (;;) {
    PollResult more = c->Poll(
        [&](const ConsumerRecord& rec) {
          EXPECT_EQ(rec.offset(), delivered == 0 ? rec.offset() : last + 1);
          ++delivered;
          last = rec.offset();
        },
        100000);
    if (more.records == 0) break;
    EXPECT_EQ(more.status, PollStatus::kOk);
  }
  EXPECT_EQ(last, total - 1u);
  EXPECT_EQ(delivered + c->lost_records(), static_cast<uint64_t>(total));
}

TEST_F(ProducerConsumerTest, StartLatestSkipsWhatWasAlreadyThere) {
  ASSERT_TRUE(Create("t", 2).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(p->TrySend(std::nullopt, "old").ok());
  ConsumerOptions co;
  co.start = StartPosition::Latest();
  auto c = bus_->CreateConsumer("t", co);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(Drain(*c).empty());
  ASSERT_TRUE(p->TrySend(std::nullopt, "new").ok());
  const auto got = Drain(*c);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "new");
}

TEST_F(ProducerConsumerTest, SeekAndStartAtAnOffset) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(p->TrySend(std::nullopt, std::to_string(i)).ok());
  ConsumerOptions co;
  co.start = StartPosition::Offset(15);
  auto c = bus_->CreateConsumer("t", co);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c->Position(0), 15u);
  auto got = Drain(*c);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0].value, "15");
  ASSERT_TRUE(c->Seek(0, 3).ok());
  EXPECT_EQ(*c->Position(0), 3u);
  got = Drain(*c, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, 3u);
  ASSERT_TRUE(c->Seek(0, 18).ok());  // forward from the current cursor
  got = Drain(*c);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, 18u);
  ASSERT_TRUE(c->Seek(0, 20).ok());  // the end is a valid position
  EXPECT_EQ(c->Seek(0, 21).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(c->Seek(1, 0).code(), StatusCode::kNotFound);
  EXPECT_EQ(c->Position(1).status().code(), StatusCode::kNotFound);
}

// A start offset past the end waits for that offset: the records produced
// before it are skipped, never delivered.
TEST_F(ProducerConsumerTest, StartingPastTheEndDeliversFromThatOffsetOn) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(p->TrySend(std::nullopt, std::to_string(i)).ok());
  ConsumerOptions co;
  co.start = StartPosition::Offset(20);
  auto c = bus_->CreateConsumer("t", co);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c->Position(0), 20u);
  EXPECT_TRUE(Drain(*c).empty());
  for (int i = 16; i < 26; ++i) ASSERT_TRUE(p->TrySend(std::nullopt, std::to_string(i)).ok());
  const auto got = Drain(*c);
  ASSERT_EQ(got.size(), 6u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].offset, 20 + i);
    EXPECT_EQ(got[i].value, std::to_string(20 + i));
  }
}

TEST_F(ProducerConsumerTest, SeekOlderThanTheRingIsReportedAsLossWithoutAColdReader) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(p.ok() && c.ok());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(p->TrySend(std::nullopt, std::string(200, 'x')).ok());
  const uint64_t earliest = bus_->DescribeTopic("t")->partitions[0].earliest_offset;
  ASSERT_GT(earliest, 10u);
  ASSERT_TRUE(c->Seek(0, 10).ok());
  uint64_t first = ~0ull;
  PollResult r =
      c->Poll([&](const ConsumerRecord& rec) { first = std::min(first, rec.offset()); }, 10);
  // Reported, then read on from the oldest record in the same call.
  EXPECT_EQ(r.status, PollStatus::kOverrun);
  EXPECT_EQ(r.lost_records, earliest - 10);
  EXPECT_EQ(r.records, 10u);
  EXPECT_EQ(first, earliest);
}

// The persistence seam: a fake cold reader serves offsets the ring lost, and
// the consumer rejoins the ring without a gap or a duplicate.
class FakeColdReader : public internal::ColdReader {
 public:
  explicit FakeColdReader(std::map<uint64_t, std::string> log) : log_(std::move(log)) {}
  Result<internal::ColdReadBatch> ReadFrom(
      const internal::ColdReadRequest& req,
      const std::function<void(const RecordView&)>& sink) override {
    ++calls;
    internal::ColdReadBatch b;
    b.next_offset = req.offset;
    if (!log_.empty() && req.offset < log_.begin()->first) {
      // Retention removed the start of the log.
      b.skipped = log_.begin()->first - req.offset;
      b.next_offset = log_.begin()->first;
      return b;
    }
    for (auto it = log_.lower_bound(req.offset); it != log_.end() && b.records < req.limit; ++it) {
      // Build a frame the way a segment holds it.
      std::vector<std::byte> frame(AlignedFrameLength(FrameLength(0, 0, it->second.size())));
      WriteFrameHeader(frame.data(), static_cast<uint32_t>(FrameLength(0, 0, it->second.size())),
                       it->first, 1, 0, 0, 0);
      std::memcpy(frame.data() + kFrameHeaderLength, it->second.data(), it->second.size());
      sink(RecordView(frame.data()));
      ++b.records;
      b.next_offset = it->first + 1;
    }
    return b;
  }
  int calls = 0;

 private:
  std::map<uint64_t, std::string> log_;
};

TEST_F(ProducerConsumerTest, ColdReaderServesWhatTheRingLostThenTheConsumerRejoins) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  std::map<uint64_t, std::string> log;
  for (int i = 0; i < 1000; ++i) {
    const std::string v = "v" + std::to_string(i) + std::string(200, '.');
    SendResult r = p->TrySend(std::nullopt, v);
    ASSERT_TRUE(r.ok());
    log[r.offset] = v;
  }
  auto cold = std::make_shared<FakeColdReader>(log);
  bus_->core()->SetColdReader(cold);
  auto c = bus_->CreateConsumer("t");  // earliest: in the ring, no cold read yet
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Seek(0, 0).ok());  // older than the ring: cold
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 100; ++i) {
    PollResult r = c->Poll(
        [&](const ConsumerRecord& rec) {
          offsets.push_back(rec.offset());
          EXPECT_EQ(rec.value(), log[rec.offset()]);
        },
        64);
    EXPECT_EQ(r.status, PollStatus::kOk);
  }
  ASSERT_EQ(offsets.size(), 1000u);
  for (uint64_t i = 0; i < offsets.size(); ++i) ASSERT_EQ(offsets[i], i);
  EXPECT_GT(cold->calls, 0);
  bus_->core()->SetColdReader(nullptr);
}

// The consumer copies records out of the ring through a 64 KiB buffer.
// Records skipped on the way to a Seek target fill it too: a Poll still
// delivers as soon as the target is reached (it returned 0 records while
// the ring had them). A record larger than the buffer grows it.
TEST_F(ProducerConsumerTest, CopyingConsumerSkipsFarAndReadsRecordsLargerThanItsBuffer) {
  ASSERT_TRUE(Create("t", 1, 1 << 20).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  const std::string filler(200, '.');
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(p->TrySend(std::nullopt, filler).ok());  // ~740 KB
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Seek(0, 2900).ok());
  std::vector<uint64_t> offsets;
  const PollResult r =
      c->Poll([&](const ConsumerRecord& rec) { offsets.push_back(rec.offset()); }, 1000);
  EXPECT_EQ(r.status, PollStatus::kOk);
  ASSERT_EQ(offsets.size(), 100u);
  EXPECT_EQ(offsets.front(), 2900u);
  EXPECT_EQ(offsets.back(), 2999u);

  const std::string big(200 * 1024, 'b');
  ASSERT_TRUE(p->TrySend(std::nullopt, big).ok());
  std::string got;
  (void)c->Poll([&](const ConsumerRecord& rec) { got = rec.value(); }, 10);
  EXPECT_EQ(got, big);
}

// The log lost its start to retention, but the ring still holds some of
// it: those come from the ring, only the rest is reported lost.
TEST_F(ProducerConsumerTest, WhatRetentionRemovedButTheRingHoldsIsNotLost) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(p->TrySend(std::nullopt, "v" + std::to_string(i) + std::string(200, '.')).ok());
  }
  Result<TopicInfo> info = bus_->DescribeTopic("t");
  ASSERT_TRUE(info.ok());
  const uint64_t earliest = info->partitions[0].earliest_offset;
  ASSERT_GT(earliest, 0u);              // the ring lost its start
  std::map<uint64_t, std::string> log;  // the log lost more: it starts 100 later
  for (uint64_t o = earliest + 100; o < 1000; ++o) log[o] = "v" + std::to_string(o);
  auto cold = std::make_shared<FakeColdReader>(log);
  bus_->core()->SetColdReader(cold);
  std::vector<OverrunInfo> losses;
  ConsumerOptions co;
  co.on_overrun = [&](const OverrunInfo& o) { losses.push_back(o); };
  auto c = bus_->CreateConsumer("t", co);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Seek(0, 0).ok());
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 100; ++i) {
    (void)c->Poll([&](const ConsumerRecord& rec) { offsets.push_back(rec.offset()); }, 64);
  }
  ASSERT_EQ(losses.size(), 1u);
  EXPECT_EQ(losses[0].from_offset, 0u);
  EXPECT_EQ(losses[0].to_offset, earliest);
  EXPECT_EQ(losses[0].lost_records, earliest);
  EXPECT_EQ(losses[0].cause, LossCause::kRetention);
  ASSERT_EQ(offsets.size(), 1000 - earliest);
  for (uint64_t i = 0; i < offsets.size(); ++i) ASSERT_EQ(offsets[i], earliest + i);
  bus_->core()->SetColdReader(nullptr);
}

// Also with nanoseconds::max(), "no deadline": the deadline saturates
// instead of overflowing into the past (which returned at once with nothing).
TEST_F(ProducerConsumerTest, PollForWakesWhenARecordArrives) {
  ASSERT_TRUE(Create("t", 1).ok());
  auto p = bus_->CreateProducer("t");
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(p.ok() && c.ok());
  for (const std::chrono::nanoseconds timeout :
       {std::chrono::nanoseconds(5s), std::chrono::nanoseconds::max()}) {
    std::thread sender([&] {
      std::this_thread::sleep_for(50ms);
      EXPECT_TRUE(p->TrySend(std::nullopt, "wake").ok());
    });
    const int64_t t0 = MonotonicNanos();
    PollResult r = c->PollFor([](const ConsumerRecord&) {}, 10, timeout);
    sender.join();
    EXPECT_EQ(r.records, 1u) << timeout.count();
    EXPECT_LT(MonotonicNanos() - t0, 2'000'000'000);
  }
}

TEST_F(ProducerConsumerTest, PollForWakesOnAnyOfSeveralPartitions) {
  ASSERT_TRUE(Create("t", 8).ok());
  auto p = bus_->CreateProducer("t");
  ASSERT_TRUE(p.ok());
  for (WaitStrategy w : {WaitStrategy::kBlocking, WaitStrategy::kSpinYield}) {
    ConsumerOptions co;
    co.wait = w;
    co.start = StartPosition::Latest();
    auto c = bus_->CreateConsumer("t", co);
    ASSERT_TRUE(c.ok());
    for (uint32_t part : {5u, 0u, 7u}) {
      std::atomic<int64_t> sent_at{0};
      std::thread sender([&] {
        std::this_thread::sleep_for(20ms);  // let the consumer fall asleep
        sent_at.store(MonotonicNanos(), std::memory_order_relaxed);
        EXPECT_TRUE(p->TrySend(std::nullopt, "x", {}, part).ok());
      });
      uint32_t seen = 99;
      int64_t received_at = 0;
      PollResult r = c->PollFor(
          [&](const ConsumerRecord& rec) {
            seen = rec.partition();
            received_at = MonotonicNanos();
          },
          10, 5s);
      sender.join();
      EXPECT_EQ(r.records, 1u);
      EXPECT_EQ(seen, part);
      // Far below the 100 ms sleep slice: woken by the commit, not a timeout.
      EXPECT_LT(received_at - sent_at.load(std::memory_order_relaxed), 80'000'000);
    }
  }
}

TEST_F(ProducerConsumerTest, PollForTimesOutWithNothing) {
  ASSERT_TRUE(Create("t", 3).ok());
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  const int64_t t0 = MonotonicNanos();
  PollResult r = c->PollFor([](const ConsumerRecord&) {}, 10, 30ms);
  const int64_t took = MonotonicNanos() - t0;
  EXPECT_EQ(r.records, 0u);
  EXPECT_EQ(r.status, PollStatus::kOk);
  EXPECT_GE(took, 30'000'000);
  EXPECT_LT(took, 1'000'000'000);
}

TEST_F(ProducerConsumerTest, SecondProducerOnASingleProducerPartitionIsRefused) {
  ASSERT_TRUE(Create("spsc", 2, 64 * 1024, /*spsc=*/true).ok());
  auto first = bus_->CreateProducer("spsc");
  ASSERT_TRUE(first.ok());
  auto second = bus_->CreateProducer("spsc");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("single-producer"), std::string::npos);
  EXPECT_NE(second.status().message().find("pid " + std::to_string(::getpid())), std::string::npos);
  // Disjoint partitions are fine once the first gives them up.
  { Producer gone = std::move(*first); }
  ProducerOptions p0, p1;
  p0.partitions = {0};
  p1.partitions = {1};
  auto a = bus_->CreateProducer("spsc", p0);
  auto b = bus_->CreateProducer("spsc", p1);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(bus_->CreateProducer("spsc", p1).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(a->TrySend(std::nullopt, "x").ok());
  EXPECT_TRUE(b->TrySend(std::nullopt, "y").ok());
  // Consumers are never limited.
  EXPECT_TRUE(bus_->CreateConsumer("spsc").ok());
  EXPECT_TRUE(bus_->CreateConsumer("spsc").ok());
}

TEST_F(ProducerConsumerTest, ManyThreadsProduceIntoOneMpmcPartitionInOrderPerThread) {
  ASSERT_TRUE(Create("t", 1, 4 << 20).ok());  // holds all 15000 frames: no overrun possible
  constexpr int kThreads = 3;
  constexpr int kEach = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto p = bus_->CreateProducer("t");
      ASSERT_TRUE(p.ok());
      for (int i = 0; i < kEach; ++i) {
        ASSERT_TRUE(p->TrySend(std::nullopt, testing::MakeValue(t, i, 32)).ok());
      }
    });
  }
  auto c = bus_->CreateConsumer("t");
  ASSERT_TRUE(c.ok());
  std::vector<int64_t> last(kThreads, -1);
  int total = 0;
  bool in_order = true;
  PollStatus status = PollStatus::kOk;
  const int64_t deadline = MonotonicNanos() + 20'000'000'000;
  while (total < kThreads * kEach && in_order && status == PollStatus::kOk &&
         MonotonicNanos() < deadline) {
    status = c->PollFor(
                  [&](const ConsumerRecord& rec) {
                    uint32_t producer = 0;
                    uint64_t seq = 0;
                    if (!testing::ParseValue(rec.value(), &producer, &seq) ||
                        static_cast<int64_t>(seq) != last[producer] + 1) {
                      in_order = false;
                      return;
                    }
                    last[producer] = static_cast<int64_t>(seq);
                    ++total;
                  },
                  1000, 100ms)
                 .status;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(status, PollStatus::kOk);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(total, kThreads * kEach);
}

}  // namespace
}  // namespace runnel
