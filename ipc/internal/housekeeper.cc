#include "ipc/internal/housekeeper.h"

#include <unistd.h>

#include <set>

#include "core/log.h"
#include "ipc/internal/process.h"

namespace runnel::internal {

namespace {

// Whether the producer whose claims carry `owner` (its client id, see
// Bus::CreateProducer) lives. A claim that carries none (0) is left to the
// timeout: a single producer's (which no other producer can claim past), or
// one whose producer stopped between taking the tail and marking it.
bool ProducerAlive(const Directory& dir, uint64_t owner) {
  if (owner == 0) return false;
  for (const ClientRecord& c : dir.LiveClients()) {
    if (c.client_id == owner) return CheckProcess(c.pid, c.start_time) == Liveness::kAlive;
  }
  return false;  // unregistered, or reaped: dead
}

}  // namespace

Housekeeper::Housekeeper(std::shared_ptr<BusCore> core, int64_t unblock_timeout_ns)
    : core_(std::move(core)), unblock_timeout_ns_(unblock_timeout_ns) {}

void Housekeeper::HeartbeatOwn(int64_t now_ns) {
  const int32_t self = static_cast<int32_t>(::getpid());
  const Directory& dir = core_->directory();
  for (const ClientRecord& c : dir.LiveClients()) {
    if (c.pid == self) dir.StoreHeartbeat(c.slot, now_ns);
  }
}

Housekeeper::TickResult Housekeeper::Tick(int64_t now_ns,
                                          std::span<const std::shared_ptr<BrokerHooks>> hooks) {
  TickResult result;
  // Entries left half-written by a process that died holding the directory
  // lock: repaired by whoever takes the lock next; make sure somebody does.
  if (core_->NeedsRepair()) {
    Result<BusCore::Guard> g = core_->TryLock();  // repairs; busy: next tick
    (void)g;
  }
  if (Result<uint32_t> n = core_->ReapDeadClients(/*wait=*/false); n.ok()) {
    result.clients_reaped = *n;
  }
  RefreshTopics(hooks);
  for (auto& [slot, topic] : topics_) {
    for (std::size_t p = 0; p < topic.unblockers.size(); ++p) {
      const RingUnblocker::Result r = topic.unblockers[p].Poll(now_ns);
      if (r.action == RingUnblocker::Action::kPadded ||
          r.action == RingUnblocker::Action::kHoleFilled) {
        ++result.claims_unblocked;
      } else if (r.action == RingUnblocker::Action::kInconsistent) {
        Log(LogLevel::kError,
            "runnel broker: %s/%zu: the ring's control words do not fit its frames at position "
            "%llu (%llu bytes): a process wrote over the ring's control block. Readers and "
            "persistence stop there; stop its clients, remove the bus (runnel bus remove "
            "--force) and start the broker again (a durable topic comes back from its log)",
            topic.view.name.c_str(), p, static_cast<unsigned long long>(r.position),
            static_cast<unsigned long long>(r.bytes));
      }
    }
  }
  if (result.claims_unblocked > 0) core_->directory().AddClaimsUnblocked(result.claims_unblocked);
  return result;
}

void Housekeeper::RefreshTopics(std::span<const std::shared_ptr<BrokerHooks>> hooks) {
  const Directory& dir = core_->directory();
  const uint64_t version = dir.topics_version();
  if (version == seen_topics_version_) return;
  const std::vector<TopicRecord> live = dir.LiveTopics();
  // Removals first: when a topic was deleted and created again (in its old
  // slot or another one), the hooks close the old incarnation (its logs)
  // before they see the new one.
  std::set<std::pair<uint32_t, uint64_t>> live_keys;
  for (const TopicRecord& t : live) live_keys.emplace(t.slot, t.generation);
  for (auto it = topics_.begin(); it != topics_.end();) {
    if (live_keys.count({it->first, it->second.view.generation}) == 0) {
      for (const auto& h : hooks) h->OnTopicRemoved(it->second.view);
      it = topics_.erase(it);
    } else {
      ++it;
    }
  }
  bool complete = true;
  for (const TopicRecord& t : live) {
    if (topics_.count(t.slot) != 0) continue;  // known, same generation
    Result<std::shared_ptr<const TopicMapping>> m = core_->MapTopic(t);
    if (!m.ok()) {
      // Deleted meanwhile (a newer version follows), or not mappable now.
      complete = false;
      continue;
    }
    Topic topic;
    topic.mapping = *m;
    topic.view.name = t.name;
    topic.view.generation = t.generation;
    topic.view.created_wall_ns = t.created_wall_ns;
    topic.view.options = OptionsFromRecord(t);
    topic.view.rings = topic.mapping->rings;
    for (const Ring& r : topic.mapping->rings) {
      topic.unblockers.emplace_back(r, unblock_timeout_ns_, [core = core_](uint64_t owner) {
        return ProducerAlive(core->directory(), owner);
      });
    }
    auto [pos, inserted] = topics_.emplace(t.slot, std::move(topic));
    (void)inserted;
    for (const auto& h : hooks) h->OnTopicAdded(pos->second.view);
  }
  if (complete) seen_topics_version_ = version;
}

void Housekeeper::DropAll(std::span<const std::shared_ptr<BrokerHooks>> hooks) {
  for (auto& [slot, topic] : topics_) {
    for (const auto& h : hooks) h->OnTopicRemoved(topic.view);
  }
  topics_.clear();
  seen_topics_version_ = ~0ull;
}

}  // namespace runnel::internal
