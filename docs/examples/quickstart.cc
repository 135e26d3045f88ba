// runnel quick start: a process that runs its own broker, creates a topic,
// sends records at-least-once (waiting until each batch is on disk) and reads
// them back from the beginning. docs/api.md walks through it.
//
//   quickstart [BUS [DATA_DIR]]      (defaults: quickstart, ./quickstart-data)
//
// Exit status 0 when every record came back exactly once, with its bytes.

#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "ipc/broker.h"  // Broker::WaitReady
#include "ipc/bus.h"

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  const std::string bus_name = argc > 1 ? argv[1] : "quickstart";
  const std::string data_dir = argc > 2 ? argv[2] : "quickstart-data";

  // Open (or create) the bus. embedded_broker runs the housekeeping and the
  // persistence thread in this process; with `runnel broker` running
  // instead, leave it false and leave data_dir empty (the broker's is used).
  runnel::BusOptions options;
  options.embedded_broker = true;
  options.data_dir = data_dir;
  runnel::Result<runnel::Bus> bus = runnel::Bus::Open(bus_name, options);
  if (!bus.ok()) {
    std::fprintf(stderr, "open: %s\n", bus.status().ToString().c_str());
    return 1;
  }
  if (runnel::Status s = bus->embedded_broker()->WaitReady(10s); !s.ok()) {
    std::fprintf(stderr, "broker: %s\n", s.ToString().c_str());
    return 1;
  }

  // Idempotent: every process of an application may create its topics.
  runnel::TopicOptions topic;
  topic.partitions = 2;
  if (runnel::Status s = bus->CreateTopic("greetings", topic); !s.ok()) {
    std::fprintf(stderr, "create topic: %s\n", s.ToString().c_str());
    return 1;
  }

  // Where the topic's partitions end now: this run's records come after.
  std::map<uint32_t, uint64_t> start;
  runnel::Result<runnel::TopicInfo> info = bus->DescribeTopic("greetings");
  if (!info.ok()) return 1;
  for (uint32_t p = 0; p < info->partitions.size(); ++p) {
    start[p] = info->partitions[p].next_offset;
  }

  // Produce: a key picks the partition (Kafka's murmur2), so each user's
  // records stay in order.
  runnel::Result<runnel::Producer> producer = bus->CreateProducer("greetings");
  if (!producer.ok()) {
    std::fprintf(stderr, "producer: %s\n", producer.status().ToString().c_str());
    return 1;
  }
  const char* users[] = {"alice", "bob", "carol"};
  std::map<uint32_t, uint64_t> last;  // highest offset sent, per partition
  constexpr int kRecords = 30;
  for (int i = 0; i < kRecords; ++i) {
    const std::string key = users[i % 3];
    const std::string value = "hello #" + std::to_string(i) + " from " + key;
    const runnel::SendResult r = producer->Send(key, value, {}, runnel::kAnyPartition, 1s);
    if (!r.ok()) {
      std::fprintf(stderr, "send: %s\n", producer->Explain(r).ToString().c_str());
      return 1;
    }
    last[r.partition] = r.offset;
  }
  // At-least-once: a record counts as sent once it is durable.
  for (const auto& [partition, offset] : last) {
    if (runnel::Status s = producer->WaitDurable(partition, offset, 5s); !s.ok()) {
      std::fprintf(stderr, "durable: %s\n", s.ToString().c_str());
      return 1;
    }
  }

  // Consume this run's records: from the ring, or from the segment files
  // for whatever the ring no longer holds.
  runnel::Result<runnel::Consumer> consumer = bus->CreateConsumer("greetings");
  if (!consumer.ok()) return 1;
  for (const auto& [partition, offset] : start) {
    if (!consumer->Seek(partition, offset).ok()) return 1;
  }
  int received = 0;
  bool in_order = true;
  std::map<std::string, int> next_from;  // per key: the next i expected
  while (received < kRecords) {
    const runnel::PollResult r = consumer->PollFor(
        [&](const runnel::ConsumerRecord& rec) {
          const std::string key(rec.key());
          const std::string value(rec.value());
          std::printf("%s/%u@%llu %s: %s\n", std::string(rec.topic()).c_str(), rec.partition(),
                      static_cast<unsigned long long>(rec.offset()), key.c_str(), value.c_str());
          // Within a key (a partition), the order of sending.
          int& expected = next_from[key];
          if (expected == 0) expected = key == "alice" ? 0 : key == "bob" ? 1 : 2;
          in_order = in_order && value == "hello #" + std::to_string(expected) + " from " + key;
          expected += 3;
          ++received;
        },
        64, 2s);
    if (r.status != runnel::PollStatus::kOk || r.records == 0) {
      std::fprintf(stderr, "poll: status %d after %d records\n", static_cast<int>(r.status),
                   received);
      return 1;
    }
  }
  std::printf("%d records sent, durable and read back%s\n", received,
              in_order ? ", in order per key" : " OUT OF ORDER");
  return in_order ? 0 : 1;
}
