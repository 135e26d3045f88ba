// runnel_ipc_test_helper: the child side of the multi-process ipc tests.
// Each subcommand plays one role against a bus, reports on stdout (one line
// per event) and exits 0 on success. Every run ends by itself after at most
// 60 s (alarm), so a crashed test never leaves it behind.
//
//   produce BUS TOPIC PRODUCER_ID COUNT VALUE_SIZE [keyed]
//   consume BUS TOPIC PRODUCERS COUNT_PER_PRODUCER TIMEOUT_MS
//   keyed-send BUS TOPIC COUNT
//   claim-and-die BUS TOPIC PARTITION SENT_BEFORE
//   consumer-wait BUS TOPIC
//   producer-wait BUS TOPIC [PARTITION]
//   broker BUS
//   topic-race BUS ITERATIONS SEED
//   open-as-nobody BUS
//   create-produce-exit BUS TOPIC COUNT

#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ipc/broker.h"
#include "ipc/bus.h"
#include "tests/ipc/test_values.h"

namespace {

using namespace runnel;
using runnel::testing::MakeValue;
using runnel::testing::ParseValue;

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

int Fail(const std::string& what, const Status& s) {
  Say("error " + what + ": " + s.ToString());
  return 1;
}

[[noreturn]] void SleepForever() {
  for (;;) ::pause();  // ends with SIGKILL from the test or SIGALRM
}

Result<Bus> OpenExisting(const char* bus, bool broker = false) {
  BusOptions o;
  o.create_if_missing = false;
  o.embedded_broker = broker;
  return Bus::Open(bus, o);
}

int Produce(char** argv, int argc) {
  auto bus = OpenExisting(argv[0]);
  if (!bus.ok()) return Fail("open", bus.status());
  auto producer = bus->CreateProducer(argv[1]);
  if (!producer.ok()) return Fail("producer", producer.status());
  const uint32_t id = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  const uint64_t count = std::strtoull(argv[3], nullptr, 10);
  const std::size_t size = std::strtoull(argv[4], nullptr, 10);
  const bool keyed = argc > 5 && std::strcmp(argv[5], "keyed") == 0;
  for (uint64_t seq = 0; seq < count; ++seq) {
    const std::string value = MakeValue(id, seq, size);
    const std::string key = "k" + std::to_string(seq % 7);
    SendResult r = producer->Send(keyed ? std::optional<std::string_view>(key) : std::nullopt,
                                  value, {}, kAnyPartition, std::chrono::seconds(10));
    if (!r.ok()) return Fail("send " + std::to_string(seq), producer->Explain(r));
  }
  Say("done " + std::to_string(count));
  return 0;
}

int Consume(char** argv) {
  auto bus = OpenExisting(argv[0]);
  if (!bus.ok()) return Fail("open", bus.status());
  auto consumer = bus->CreateConsumer(argv[1]);
  if (!consumer.ok()) return Fail("consumer", consumer.status());
  const uint32_t producers = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  const uint64_t per_producer = std::strtoull(argv[3], nullptr, 10);
  const int64_t timeout_ms = std::strtoll(argv[4], nullptr, 10);
  Say("ready");
  std::vector<std::vector<bool>> seen(producers, std::vector<bool>(per_producer, false));
  std::map<uint32_t, uint64_t> last_offset;                    // by partition
  std::map<std::pair<uint32_t, uint32_t>, uint64_t> last_seq;  // (partition, producer)
  uint64_t total = 0;
  const uint64_t expected = producers * per_producer;
  std::string problem;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (total < expected && problem.empty() && std::chrono::steady_clock::now() < deadline) {
    PollResult r = consumer->PollFor(
        [&](const ConsumerRecord& rec) {
          if (!problem.empty()) return;
          uint32_t p = 0;
          uint64_t seq = 0;
          if (!ParseValue(rec.value(), &p, &seq) || p >= producers || seq >= per_producer) {
            problem = "bad bytes at partition " + std::to_string(rec.partition()) + " offset " +
                      std::to_string(rec.offset());
            return;
          }
          auto lo = last_offset.find(rec.partition());
          if (lo != last_offset.end() && rec.offset() <= lo->second) {
            problem = "offsets out of order in partition " + std::to_string(rec.partition());
            return;
          }
          last_offset[rec.partition()] = rec.offset();
          const auto key = std::make_pair(rec.partition(), p);
          auto ls = last_seq.find(key);
          if (ls != last_seq.end() && seq <= ls->second) {
            problem = "producer " + std::to_string(p) + " out of order in partition " +
                      std::to_string(rec.partition());
            return;
          }
          last_seq[key] = seq;
          if (seen[p][seq]) {
            problem = "duplicate " + std::to_string(p) + ":" + std::to_string(seq);
            return;
          }
          seen[p][seq] = true;
          ++total;
        },
        256, std::chrono::milliseconds(100));
    if (r.status != PollStatus::kOk)
      problem = std::string("poll: ") + std::string(PollStatusName(r.status));
  }
  if (!problem.empty()) {
    Say("error " + problem);
    return 1;
  }
  if (total != expected) {
    Say("error timeout with " + std::to_string(total) + " of " + std::to_string(expected));
    return 1;
  }
  Say("ok " + std::to_string(total));
  return 0;
}

int KeyedSend(char** argv) {
  auto bus = OpenExisting(argv[0]);
  if (!bus.ok()) return Fail("open", bus.status());
  auto producer = bus->CreateProducer(argv[1]);
  if (!producer.ok()) return Fail("producer", producer.status());
  const uint64_t count = std::strtoull(argv[2], nullptr, 10);
  for (uint64_t i = 0; i < count; ++i) {
    const std::string key = "key-" + std::to_string(i);
    SendResult r = producer->TrySend(key, key);
    if (!r.ok()) return Fail("send", producer->Explain(r));
  }
  Say("done");
  return 0;
}

int ClaimAndDie(char** argv) {
  auto bus = OpenExisting(argv[0]);
  if (!bus.ok()) return Fail("open", bus.status());
  const uint32_t partition = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  ProducerOptions po;
  po.partitions = {partition};
  auto producer = bus->CreateProducer(argv[1], po);
  if (!producer.ok()) return Fail("producer", producer.status());
  const uint64_t before = std::strtoull(argv[3], nullptr, 10);
  for (uint64_t i = 0; i < before; ++i) {
    SendResult r = producer->TrySend(std::nullopt, "before-" + std::to_string(i), {}, partition);
    if (!r.ok()) return Fail("send", producer->Explain(r));
  }
  ProducerClaim claim = producer->TryClaim(partition, 0, 0, 32, false);
  if (!claim.ok()) return Fail("claim", producer->Explain({claim.status(), partition, 0}));
  std::memset(claim.value().data(), 'x', 16);  // half-written
  Say("claimed " + std::to_string(claim.offset()));
  ::raise(SIGKILL);
  return 2;
}

int ConsumerWait(char** argv) {
  auto bus = OpenExisting(argv[0]);
  if (!bus.ok()) return Fail("open", bus.status());
  auto consumer = bus->CreateConsumer(argv[1]);
  if (!consumer.ok()) return Fail("consumer", consumer.status());
  Say("ready");
  SleepForever();
}

int ProducerWait(char** argv, int argc) {
  auto bus = OpenExisting(argv[0]);
  if (!bus.ok()) return Fail("open", bus.status());
  ProducerOptions po;
  if (argc > 2) po.partitions = {static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10))};
  auto producer = bus->CreateProducer(argv[1], po);
  if (!producer.ok()) {
    Say(std::string("refused ") + std::string(StatusCodeName(producer.status().code())));
    return 0;
  }
  Say("ready");
  SleepForever();
}

int RunBroker(char** argv) {
  auto bus = OpenExisting(argv[0], /*broker=*/true);
  if (!bus.ok()) return Fail("open", bus.status());
  Say("standby");
  // Active and done with its first tick (topics handed to the hooks).
  while (!bus->embedded_broker()->WaitReady(std::chrono::seconds(1)).ok()) {
  }
  Say("active");
  SleepForever();
}

// Races topic create/delete/produce/consume with other processes. Each name
// always gets the same settings, so creates are idempotent or succeed.
int TopicRace(char** argv) {
  auto bus = OpenExisting(argv[0]);
  if (!bus.ok()) return Fail("open", bus.status());
  const int iterations = std::atoi(argv[1]);
  std::mt19937 rng(static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10)));
  auto acceptable = [](const Status& s) { return s.ok() || s.code() == StatusCode::kNotFound; };
  for (int i = 0; i < iterations; ++i) {
    const uint32_t n = rng() % 3;
    const std::string name = "race." + std::to_string(n);
    TopicOptions o;
    o.partitions = n + 1;
    o.ring_bytes = 64 * 1024;
    switch (rng() % 4) {
      case 0: {
        Status s = bus->CreateTopic(name, o);
        if (!s.ok()) return Fail("create", s);
        break;
      }
      case 1: {
        Status s = bus->DeleteTopic(name);
        if (!acceptable(s)) return Fail("delete", s);
        break;
      }
      case 2: {
        auto p = bus->CreateProducer(name);
        if (!p.ok()) {
          if (!acceptable(p.status())) return Fail("producer", p.status());
          break;
        }
        SendResult r = p->TrySend(std::nullopt, "x");
        if (!r.ok() && r.status != SendStatus::kTopicDeleted) return Fail("send", p->Explain(r));
        break;
      }
      case 3: {
        auto c = bus->CreateConsumer(name);
        if (!c.ok()) {
          if (!acceptable(c.status())) return Fail("consumer", c.status());
          break;
        }
        PollResult r = c->Poll([](const ConsumerRecord&) {}, 16);
        if (r.status == PollStatus::kCorrupt) {
          Say("error corrupt frame");
          return 1;
        }
        break;
      }
    }
  }
  Say("done");
  return 0;
}

int OpenAsNobody(char** argv) {
  if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) {
    Say("error cannot become nobody");
    return 1;
  }
  BusOptions o;
  o.create_if_missing = true;
  auto bus = Bus::Open(argv[0], o);
  if (bus.ok()) {
    Say("status ok");
    return 0;
  }
  Say("status " + std::string(StatusCodeName(bus.status().code())) + " " + bus.status().message());
  return 0;
}

int CreateProduceExit(char** argv) {
  auto bus = Bus::Open(argv[0], {});
  if (!bus.ok()) return Fail("open", bus.status());
  TopicOptions o;
  o.partitions = 2;
  o.ring_bytes = 64 * 1024;
  if (Status s = bus->CreateTopic(argv[1], o); !s.ok()) return Fail("create", s);
  auto producer = bus->CreateProducer(argv[1]);
  if (!producer.ok()) return Fail("producer", producer.status());
  const uint64_t count = std::strtoull(argv[2], nullptr, 10);
  for (uint64_t i = 0; i < count; ++i) {
    SendResult r = producer->TrySend(std::nullopt, MakeValue(7, i, 40));
    if (!r.ok()) return Fail("send", producer->Explain(r));
  }
  Say("done");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::alarm(60);
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s COMMAND BUS ...\n", argv[0]);
    return 2;
  }
  const std::string cmd = argv[1];
  char** a = argv + 2;
  const int n = argc - 2;
  if (cmd == "produce" && n >= 5) return Produce(a, n);
  if (cmd == "consume" && n >= 5) return Consume(a);
  if (cmd == "keyed-send" && n >= 3) return KeyedSend(a);
  if (cmd == "claim-and-die" && n >= 4) return ClaimAndDie(a);
  if (cmd == "consumer-wait" && n >= 2) return ConsumerWait(a);
  if (cmd == "producer-wait" && n >= 2) return ProducerWait(a, n);
  if (cmd == "broker" && n >= 1) return RunBroker(a);
  if (cmd == "topic-race" && n >= 3) return TopicRace(a);
  if (cmd == "open-as-nobody" && n >= 1) return OpenAsNobody(a);
  if (cmd == "create-produce-exit" && n >= 3) return CreateProduceExit(a);
  std::fprintf(stderr, "unknown command or missing arguments: %s\n", cmd.c_str());
  return 2;
}
