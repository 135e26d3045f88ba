// Housekeeper: the work an active broker does every tick (see ipc/broker.h
// for the rules). Not thread-safe: driven by the broker thread only.

#ifndef RUNNEL_IPC_INTERNAL_HOUSEKEEPER_H_
#define RUNNEL_IPC_INTERNAL_HOUSEKEEPER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "core/ring.h"
#include "ipc/broker.h"
#include "ipc/internal/bus_core.h"

namespace runnel::internal {

class Housekeeper {
 public:
  Housekeeper(std::shared_ptr<BusCore> core, int64_t unblock_timeout_ns);

  struct TickResult {
    uint32_t clients_reaped = 0;
    uint32_t claims_unblocked = 0;
  };
  // One pass of an active broker: repair, reap dead clients, follow topic
  // changes (hooks see them), poll the unblockers.
  TickResult Tick(int64_t now_ns, std::span<const std::shared_ptr<BrokerHooks>> hooks);

  // Heartbeats the registrations of this process (any broker, active or not).
  void HeartbeatOwn(int64_t now_ns);

  // Forgets every topic, calling OnTopicRemoved (on stop).
  void DropAll(std::span<const std::shared_ptr<BrokerHooks>> hooks);

 private:
  struct Topic {
    std::shared_ptr<const TopicMapping> mapping;
    std::vector<RingUnblocker> unblockers;
    BrokerTopic view;
  };
  void RefreshTopics(std::span<const std::shared_ptr<BrokerHooks>> hooks);

  std::shared_ptr<BusCore> core_;
  int64_t unblock_timeout_ns_;
  std::map<uint32_t, Topic> topics_;  // by directory slot
  uint64_t seen_topics_version_ = ~0ull;
};

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_HOUSEKEEPER_H_
