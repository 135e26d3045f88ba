// Broker: the bus's housekeeping, embedded in any process or standalone.
//
// Exactly one broker is active per bus: it holds flock(LOCK_EX) on
// /dev/shm/runnel.<bus>.broker, which the kernel releases when the process
// dies. A broker started in kStandby mode retries the lock every
// takeover_retry_ms, so when the active broker's process dies another one
// takes over within about that long. While active, every tick it
//  - sweeps the client table: a client whose pid is gone, or whose pid now
//    belongs to a process with another start time (pid recycled), is dead:
//    its registrations (and single-producer partitions) are released;
//  - polls a RingUnblocker per partition: a claim left uncommitted for
//    unblock_timeout_ms becomes padding, so consumers move past it (on a
//    multi-producer topic only once its producer's process is dead);
//  - repairs directory entries left half-written by a process that died
//    holding the directory lock;
//  - calls the hooks (the persistence thread: ipc/durability.h).
// Every broker thread, active or not, heartbeats its own process's client
// registrations.
//
// Standalone use (the CLI's `runnel broker`):
//   auto bus = Bus::Open(name, {});
//   Broker broker(*bus, {});
//   broker.AddHooks(persistence);
//   if (Status s = broker.Start(BrokerMode::kExclusive); !s.ok()) { ...exit 1... }
//   ...wait for SIGINT/SIGTERM...
//   broker.Stop();

#ifndef RUNNEL_IPC_BROKER_H_
#define RUNNEL_IPC_BROKER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/ring.h"
#include "core/status.h"
#include "ipc/bus.h"

namespace runnel {

namespace internal {
class Housekeeper;
class LockFile;
}  // namespace internal

struct BrokerOptions {
  int64_t tick_ms = 0;              // 0: BusOptions::sweep_period_ms
  int64_t unblock_timeout_ms = 0;   // 0: BusOptions::unblock_timeout_ms
  int64_t takeover_retry_ms = 100;  // standby: how often to try for the broker lock
};

enum class BrokerMode : uint8_t {
  kStandby = 0,    // become active now or whenever the active broker dies
  kExclusive = 1,  // become active now or fail with kAlreadyExists
};

// What a hook learns about a topic. The rings stay mapped until
// OnTopicRemoved (or Stop) returns.
struct BrokerTopic {
  std::string name;
  uint64_t generation = 0;
  int64_t created_wall_ns = 0;  // with the generation, identifies this incarnation
  TopicOptions options;
  std::vector<Ring> rings;  // index = partition
};

struct BrokerContext {
  std::string bus_name;
  std::string data_dir;
};

// Extension points, all called on the broker thread, only while active.
class BrokerHooks {
 public:
  virtual ~BrokerHooks() = default;
  // Once, when this broker becomes active; OnTopicAdded follows for every
  // live topic.
  virtual void OnBecameActive(const BrokerContext&) {}
  virtual void OnTopicAdded(const BrokerTopic&) {}
  // Before the broker unmaps the topic's rings (deleted, or broker stopping).
  virtual void OnTopicRemoved(const BrokerTopic&) {}
  // Every tick, after the housekeeping.
  virtual void OnTick(int64_t /*now_ns*/) {}
  // The broker is stopping: flush and release everything. Last call.
  virtual void Stop() {}
};

class Broker {
 public:
  explicit Broker(const Bus& bus, BrokerOptions options = {});
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;
  ~Broker();  // Stop()

  // REQUIRES: before Start.
  void AddHooks(std::shared_ptr<BrokerHooks> hooks);

  // Starts the broker thread. kExclusive: kAlreadyExists (naming the pid of
  // the active broker) if another broker is active. kFailedPrecondition if
  // already started.
  [[nodiscard]] Status Start(BrokerMode mode = BrokerMode::kStandby);
  // Stops the thread, calls the hooks' Stop, releases the broker lock.
  void Stop();

  // Blocks until this broker is active and has finished its first tick: the
  // hooks' OnBecameActive and OnTopicAdded have run for every live topic (a
  // durable bus: topics found in the data dir are restored and handed to the
  // persistence thread). OK at once if that already happened. kTimeout if it
  // did not within `timeout` (a standby broker waits for the active one to
  // go away; milliseconds::max() waits for good); kFailedPrecondition if
  // the broker is not started or stops meanwhile. Start and WaitReady of a
  // broker made from a moved-from Bus return kFailedPrecondition.
  [[nodiscard]] Status WaitReady(std::chrono::milliseconds timeout);

  bool IsActive() const;
  bool IsRunning() const;

  struct Stats {
    uint64_t ticks = 0;
    uint64_t clients_reaped = 0;
    uint64_t claims_unblocked = 0;
  };
  Stats stats() const;

 private:
  friend class Bus;
  Broker(std::shared_ptr<internal::BusCore> core, BrokerOptions options);
  void Run();
  bool TryBecomeActive();

  std::shared_ptr<internal::BusCore> core_;
  BrokerOptions options_;
  std::unique_ptr<internal::LockFile> lock_;
  std::unique_ptr<internal::Housekeeper> housekeeper_;
  std::vector<std::shared_ptr<BrokerHooks>> hooks_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;   // guarded by mu_
  bool ready_ = false;  // guarded by mu_: active and one tick done (WaitReady)
  // Relaxed: status flags read by other threads for display and tests.
  std::atomic<bool> active_{false};
  std::atomic<bool> running_{false};
  std::atomic<uint64_t> ticks_{0};
  std::atomic<uint64_t> reaped_{0};
  std::atomic<uint64_t> unblocked_{0};
};

}  // namespace runnel

#endif  // RUNNEL_IPC_BROKER_H_
