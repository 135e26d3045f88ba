// kill -9 of producers, consumers and brokers; permissions; broker hooks.

#include <grp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/record.h"
#include "core/wait.h"
#include "gtest/gtest.h"
#include "ipc/broker.h"
#include "ipc/bus.h"
#include "ipc/internal/bus_core.h"
#include "ipc/internal/directory.h"
#include "ipc/internal/names.h"
#include "ipc/internal/process.h"
#include "tests/ipc/test_util.h"

namespace runnel {
namespace {

using namespace std::chrono_literals;
using testing::BusFiles;
using testing::Child;
using testing::Eventually;
using testing::ScopedBusName;

TopicOptions Small(uint32_t partitions = 1) {
  TopicOptions o;
  o.partitions = partitions;
  o.ring_bytes = 64 * 1024;
  return o;
}

// A process that was killed but not yet reaped (a zombie) is dead: its
// locks and mappings are gone. (It counted as alive until its parent reaped
// it, so a broker killed with kill -9 kept refusing a new one meanwhile.)
TEST(Liveness, AnUnreapedChildIsDead) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(0);
  std::optional<uint64_t> start;
  // Its start time, then its state, from /proc while it lingers unreaped.
  EXPECT_TRUE(Eventually(
      [&] {
        start = internal::ProcessStartTime(pid);
        return start.has_value() &&
               internal::CheckProcess(pid, *start) == internal::Liveness::kDead;
      },
      5s));
  EXPECT_EQ(::kill(pid, 0), 0);  // the pid is still there
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(internal::CheckProcess(pid, start.value_or(0)), internal::Liveness::kDead);
  EXPECT_EQ(internal::CheckProcess(::getpid(), internal::SelfIdentity().start_time),
            internal::Liveness::kAlive);
}

// A process whose main thread left (pthread_exit), the others running
// on, shows its leader as a zombie: it is alive (a producer there still
// owns its partition).
TEST(Liveness, AProcessWhoseMainThreadExitedIsAlive) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::thread([fd = ready[1]] {
      const char c = 'x';
      (void)!::write(fd, &c, 1);
      ::sleep(30);
      ::_exit(0);
    }).detach();
    ::syscall(SYS_exit, 0);  // this thread only, as pthread_exit, without unwinding
  }
  ::close(ready[1]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  const std::optional<uint64_t> start = internal::ProcessStartTime(pid);
  ASSERT_TRUE(start.has_value());
  // The leader turns zombie once pthread_exit is done; alive all along.
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(internal::CheckProcess(pid, *start), internal::Liveness::kAlive);
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
}

TEST(Liveness, ProducerKilledMidClaimIsUnblockedWithinTheBound) {
  ScopedBusName name;
  BusOptions bo;
  bo.embedded_broker = true;  // unblock_timeout_ms 200, sweep 20 ms
  auto bus = Bus::Open(*name, bo);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
  auto consumer = bus->CreateConsumer("t");
  auto producer = bus->CreateProducer("t");
  ASSERT_TRUE(consumer.ok() && producer.ok());

  Child child({"claim-and-die", *name, "t", "0", "5"});
  std::optional<std::string> line = child.ReadLine(20s);
  ASSERT_EQ(line.value_or("(none)"), "claimed 5");
  std::optional<int> status = child.Wait(10s);
  ASSERT_TRUE(status && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL);
  const int64_t died = MonotonicNanos();

  // This record sits behind the dead claim: readers reach it only once the
  // broker has turned the claim into padding.
  SendResult r = producer->TrySend(std::nullopt, "after");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.offset, 6u);
  std::vector<std::string> values;
  std::vector<uint64_t> offsets;
  while (values.size() < 6 && MonotonicNanos() - died < 5'000'000'000) {
    PollResult pr = consumer->PollFor(
        [&](const ConsumerRecord& rec) {
          values.emplace_back(rec.value());
          offsets.push_back(rec.offset());
        },
        100, 100ms);
    ASSERT_EQ(pr.status, PollStatus::kOk);
  }
  const int64_t waited = MonotonicNanos() - died;
  ASSERT_EQ(values.size(), 6u);
  EXPECT_EQ(values.back(), "after");
  EXPECT_EQ(offsets, (std::vector<uint64_t>{0, 1, 2, 3, 4, 6}));  // 5 was the dead claim
  EXPECT_LT(waited, 1'000'000'000) << "unblocked after " << waited / 1'000'000 << " ms";
  auto info = bus->DescribeTopic("t");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->partitions[0].unblocked_claims, 1u);
  // The dead producer's registration is released too.
  EXPECT_TRUE(Eventually([&] { return bus->DescribeTopic("t")->producers.size() == 1; }, 3s));
}

TEST(Liveness, KilledConsumersRegistrationIsReleased) {
  ScopedBusName name;
  BusOptions bo;
  bo.embedded_broker = true;
  auto bus = Bus::Open(*name, bo);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Small(2)).ok());
  Child child({"consumer-wait", *name, "t"});
  ASSERT_TRUE(child.WaitForLine("ready", 20s));
  auto info = bus->DescribeTopic("t");
  ASSERT_TRUE(info.ok());
  ASSERT_EQ(info->consumers.size(), 1u);
  EXPECT_EQ(info->consumers[0].pid, child.pid());
  EXPECT_TRUE(info->consumers[0].alive);
  EXPECT_EQ(info->consumers[0].partitions.size(), 2u);
  const uint64_t reaped_before = bus->Info()->clients_reaped;
  child.Kill();
  EXPECT_TRUE(Eventually([&] { return bus->DescribeTopic("t")->consumers.empty(); }, 3s));
  EXPECT_EQ(bus->Info()->clients_reaped, reaped_before + 1);
  // The broker counts the reap after its tick, which the checks above may
  // have seen half way.
  EXPECT_TRUE(Eventually([&] { return bus->embedded_broker()->stats().clients_reaped >= 1; }, 3s));
}

// With no broker running nobody sweeps dead clients' registrations: a bus
// whose every client slot a killed process held refused every new client
// ("all 512 client slots ... are in use") until a broker started. A client
// that finds the slots full takes back the dead ones.
TEST(Liveness, ClientSlotsOfDeadProcessesAreTakenBackWithoutABroker) {
  ScopedBusName name;
  auto bus = Bus::Open(*name, BusOptions{});
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto b = Bus::Open(*name, BusOptions{});
    if (!b.ok()) _exit(2);
    std::vector<Consumer> held;
    for (;;) {
      auto c = b->CreateConsumer("t");
      if (!c.ok()) break;
      held.push_back(std::move(*c));
    }
    _exit(held.size() == internal::kMaxClients ? 0 : 3);  // registrations stay behind
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_EQ(bus->Info()->clients, internal::kMaxClients);
  auto consumer = bus->CreateConsumer("t");
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  auto producer = bus->CreateProducer("t");
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  EXPECT_EQ(bus->Info()->clients, 2u);
  EXPECT_EQ(bus->Info()->clients_reaped, internal::kMaxClients);
}

TEST(Liveness, AnotherEmbeddedBrokerTakesOverWhenTheActiveOneIsKilled) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);  // no broker in this process
  ASSERT_TRUE(bus.ok());
  Child a({"broker", *name});
  ASSERT_TRUE(a.WaitForLine("active", 20s));
  Child b({"broker", *name});
  ASSERT_TRUE(b.WaitForLine("standby", 20s));
  EXPECT_FALSE(b.WaitForLine("active", 300ms));  // only one is active
  auto info = bus->Info();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->broker_pid, a.pid());
  EXPECT_TRUE(info->broker_alive);
  const uint64_t epoch = info->broker_epoch;

  a.Kill();
  const int64_t killed = MonotonicNanos();
  ASSERT_TRUE(b.WaitForLine("active", 5s));
  EXPECT_LT(MonotonicNanos() - killed, 2'000'000'000);
  info = bus->Info();
  EXPECT_EQ(info->broker_pid, b.pid());
  EXPECT_TRUE(info->broker_alive);
  EXPECT_EQ(info->broker_epoch, epoch + 1);
  b.Kill();
  EXPECT_FALSE(bus->Info()->broker_alive);
}

TEST(Liveness, BusInfoTellsABrokerThatNeverRanFromOneThatStoppedOrDied) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  auto info = bus->Info();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->broker_state, BrokerState::kNeverStarted);
  EXPECT_EQ(info->broker_pid, 0);
  EXPECT_EQ(info->broker_epoch, 0u);
  EXPECT_EQ(info->broker_stopped_pid, 0);
  EXPECT_EQ(info->broker_stopped_wall_ns, 0);

  Broker broker(*bus);
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  ASSERT_TRUE(broker.WaitReady(10s).ok());
  info = bus->Info();
  EXPECT_EQ(info->broker_state, BrokerState::kRunning);
  EXPECT_EQ(info->broker_pid, ::getpid());
  EXPECT_TRUE(info->broker_alive);
  EXPECT_EQ(info->broker_epoch, 1u);
  EXPECT_LT(info->broker_idle_ms, 5'000);

  const int64_t before_stop = WallClockNanos();
  broker.Stop();
  const int64_t after_stop = WallClockNanos();
  info = bus->Info();
  EXPECT_EQ(info->broker_state, BrokerState::kStopped);
  EXPECT_EQ(info->broker_pid, 0);
  EXPECT_FALSE(info->broker_alive);
  EXPECT_EQ(info->broker_epoch, 1u);
  EXPECT_EQ(info->broker_stopped_pid, ::getpid());
  EXPECT_GE(info->broker_stopped_wall_ns, before_stop);
  EXPECT_LE(info->broker_stopped_wall_ns, after_stop);

  // A broker process killed with SIGKILL never stops cleanly: it died, and
  // the last clean stop stays on record.
  Child killed({"broker", *name});
  ASSERT_TRUE(killed.WaitForLine("active", 20s));
  const pid_t killed_pid = killed.pid();
  killed.Kill();
  std::this_thread::sleep_for(50ms);
  info = bus->Info();
  EXPECT_EQ(info->broker_state, BrokerState::kDied);
  EXPECT_EQ(info->broker_pid, killed_pid);
  EXPECT_FALSE(info->broker_alive);
  EXPECT_EQ(info->broker_epoch, 2u);
  EXPECT_GE(info->broker_idle_ms, 50);
  EXPECT_EQ(info->broker_stopped_pid, ::getpid());
}

TEST(Liveness, ExclusiveBrokerIsRefusedWhileAnotherIsActive) {
  ScopedBusName name;
  BusOptions bo;
  bo.embedded_broker = true;
  std::optional<Bus> first;
  {
    auto b = Bus::Open(*name, bo);
    ASSERT_TRUE(b.ok());
    first.emplace(std::move(*b));
  }
  ASSERT_TRUE(first->embedded_broker()->WaitReady(10s).ok());
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  Broker standalone(*bus);
  Status s = standalone.Start(BrokerMode::kExclusive);
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find("pid " + std::to_string(::getpid())), std::string::npos)
      << s.message();
  first.reset();  // stops the embedded broker, releasing the lock
  ASSERT_TRUE(standalone.Start(BrokerMode::kExclusive).ok());
  EXPECT_TRUE(standalone.IsActive());
  EXPECT_EQ(standalone.Start().code(), StatusCode::kFailedPrecondition);
  standalone.Stop();
  EXPECT_FALSE(standalone.IsActive());
}

TEST(Liveness, SingleProducerPartitionHeldByAnotherProcessIsFreedWhenItDies) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);  // no broker: Register reclaims a dead holder itself
  ASSERT_TRUE(bus.ok());
  TopicOptions o = Small(2);
  o.single_producer = true;
  ASSERT_TRUE(bus->CreateTopic("spsc", o).ok());
  Child child({"producer-wait", *name, "spsc", "1"});
  ASSERT_TRUE(child.WaitForLine("ready", 20s));
  ProducerOptions p1;
  p1.partitions = {1};
  auto refused = bus->CreateProducer("spsc", p1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("pid " + std::to_string(child.pid())),
            std::string::npos)
      << refused.status().message();
  // What to do, for a program and for a `runnel produce` user.
  EXPECT_NE(refused.status().message().find(
                "(ProducerOptions::partitions, `runnel produce --partition`)"),
            std::string::npos)
      << refused.status().message();
  ProducerOptions p0;
  p0.partitions = {0};
  auto other = bus->CreateProducer("spsc", p0);
  EXPECT_TRUE(other.ok());
  // And the reverse: the child is refused a partition we hold.
  Child second({"producer-wait", *name, "spsc", "0"});
  EXPECT_TRUE(second.WaitForLine("refused failed_precondition", 20s));
  child.Kill();
  auto now = bus->CreateProducer("spsc", p1);
  ASSERT_TRUE(now.ok()) << now.status().ToString();
  EXPECT_TRUE(now->TrySend(std::nullopt, "mine now").ok());
}

TEST(Liveness, AnotherUserIsRefusedWithAClearError) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to run a child as another user (setuid to nobody)";
  }
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("t", Small()).ok());
  Child child({"open-as-nobody", *name});
  std::optional<std::string> line = child.ReadLine(20s);
  ASSERT_TRUE(line);
  EXPECT_EQ(line->rfind("status permission_denied", 0), 0u) << *line;
  EXPECT_NE(line->find("/dev/shm/runnel." + *name + ".dir"), std::string::npos) << *line;
  EXPECT_EQ(child.ExitCode(10s), 0);
}

TEST(Liveness, GroupSharedBusIsUsableByAnotherUserOfTheGroup) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to run a child as another user (setuid to nobody)";
  }
  ScopedBusName name;
  BusOptions bo;
  bo.group_shared = true;
  auto bus = Bus::Open(*name, bo);
  ASSERT_TRUE(bus.ok());
  // Hand the bus's group to nogroup (65534), the child's group.
  for (const std::string& f : BusFiles(*name)) {
    ASSERT_EQ(::chown(("/dev/shm/" + f).c_str(), 0, 65534), 0) << f;
  }
  Child child({"open-as-nobody", *name});
  EXPECT_EQ(child.ReadLine(20s).value_or("(none)"), "status ok");
  EXPECT_EQ(child.ExitCode(10s), 0);
}

class RecordingHooks : public BrokerHooks {
 public:
  explicit RecordingHooks(std::chrono::milliseconds activation_delay = 0ms)
      : activation_delay_(activation_delay) {}
  void OnBecameActive(const BrokerContext& c) override {
    std::this_thread::sleep_for(activation_delay_);  // a slow restore from disk
    Add("active " + c.bus_name);
  }
  void OnTopicAdded(const BrokerTopic& t) override {
    Add("added " + t.name + " " + std::to_string(t.rings.size()));
  }
  void OnTopicRemoved(const BrokerTopic& t) override { Add("removed " + t.name); }
  void Stop() override { Add("stop"); }
  std::vector<std::string> events() {
    std::lock_guard<std::mutex> lk(mu_);
    return events_;
  }
  bool Has(const std::string& e) {
    auto ev = events();
    return std::find(ev.begin(), ev.end(), e) != ev.end();
  }

 private:
  void Add(std::string e) {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back(std::move(e));
  }
  const std::chrono::milliseconds activation_delay_;
  std::mutex mu_;
  std::vector<std::string> events_;
};

TEST(Liveness, WaitReadyReturnsOnceTheHooksHaveSeenEveryTopic) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("a", Small(2)).ok());
  ASSERT_TRUE(bus->CreateTopic("b", Small(1)).ok());
  auto hooks = std::make_shared<RecordingHooks>(150ms);
  Broker broker(*bus);
  broker.AddHooks(hooks);
  EXPECT_EQ(broker.WaitReady(10ms).code(), StatusCode::kFailedPrecondition);  // not started
  ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
  ASSERT_TRUE(broker.WaitReady(10s).ok());
  // No polling: everything happened before WaitReady returned.
  EXPECT_EQ(hooks->events(),
            (std::vector<std::string>{"active " + *name, "added a 2", "added b 1"}));
  EXPECT_GE(broker.stats().ticks, 1u);
  EXPECT_TRUE(broker.WaitReady(0ms).ok());  // stays ready

  // A standby broker is not ready while this one is active.
  auto other_bus = Bus::Open(*name);
  ASSERT_TRUE(other_bus.ok());
  Broker standby(*other_bus, BrokerOptions{.takeover_retry_ms = 10});
  ASSERT_TRUE(standby.Start(BrokerMode::kStandby).ok());
  const Status waiting = standby.WaitReady(100ms);
  EXPECT_EQ(waiting.code(), StatusCode::kTimeout);
  EXPECT_NE(waiting.message().find("standing by: another broker is active"), std::string::npos)
      << waiting.message();
  // The longest timeout waits too (it overflowed and returned at once).
  std::future<Status> forever = std::async(
      std::launch::async, [&] { return standby.WaitReady(std::chrono::milliseconds::max()); });
  EXPECT_EQ(forever.wait_for(300ms), std::future_status::timeout);
  broker.Stop();
  EXPECT_EQ(broker.WaitReady(0ms).code(), StatusCode::kFailedPrecondition);  // stopped
  EXPECT_TRUE(forever.get().ok());                                           // took over
  EXPECT_TRUE(standby.WaitReady(10s).ok());
  EXPECT_TRUE(standby.IsActive());
  standby.Stop();
}

TEST(Liveness, ABrokerOnAMovedFromBusSaysSoInsteadOfCrashing) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  Bus moved_to = std::move(*bus);
  Broker broker(*bus);  // NOLINT(bugprone-use-after-move): what is tested
  EXPECT_EQ(broker.Start().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(broker.WaitReady(10ms).code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(broker.Start().message().find("moved from"), std::string::npos);
  EXPECT_FALSE(broker.IsRunning());
}

TEST(Liveness, BrokerHooksSeeActivationTopicsAndStop) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  ASSERT_TRUE(bus->CreateTopic("before", Small(3)).ok());
  auto hooks = std::make_shared<RecordingHooks>();
  {
    Broker broker(*bus);
    broker.AddHooks(hooks);
    ASSERT_TRUE(broker.Start(BrokerMode::kExclusive).ok());
    ASSERT_TRUE(broker.WaitReady(10s).ok());
    ASSERT_TRUE(hooks->Has("added before 3"));
    ASSERT_TRUE(bus->CreateTopic("later", Small(2)).ok());
    ASSERT_TRUE(Eventually([&] { return hooks->Has("added later 2"); }, 2s));
    ASSERT_TRUE(bus->DeleteTopic("before").ok());
    ASSERT_TRUE(Eventually([&] { return hooks->Has("removed before"); }, 2s));
  }
  const std::vector<std::string> ev = hooks->events();
  ASSERT_GE(ev.size(), 5u);
  EXPECT_EQ(ev.front(), "active " + *name);
  EXPECT_EQ(ev[ev.size() - 2], "removed later");
  EXPECT_EQ(ev.back(), "stop");
}

TEST(Liveness, TopicLeftHalfCreatedByADeadProcessIsCleanedUp) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  internal::BusCore& core = *bus->core();
  {
    // What a creator that died mid-create leaves: an entry in "creating" and
    // part of its ring files.
    auto guard = core.Lock();
    ASSERT_TRUE(guard.ok());
    internal::TopicRecord t;
    t.slot = 5;
    t.generation = core.directory().NextGeneration();
    t.state = internal::TopicState::kCreating;
    t.name = "ghost";
    t.partitions = 2;
    t.ring_capacity = 64 * 1024;
    core.directory().WriteTopic(t);
    auto region = internal::SharedRegion::Create(
        internal::RingShmName(*name, "ghost", 0, t.generation), 4096, 0600);
    ASSERT_TRUE(region.ok());
  }
  EXPECT_TRUE(core.NeedsRepair());
  EXPECT_EQ(BusFiles(*name).size(), 3u);
  ASSERT_TRUE(bus->CreateTopic("ghost", Small()).ok());  // takes the lock: repairs
  EXPECT_FALSE(core.NeedsRepair());
  auto topics = bus->ListTopics();
  ASSERT_EQ(topics->size(), 1u);
  EXPECT_EQ((*topics)[0].options.partitions, 1u);
  EXPECT_EQ(BusFiles(*name).size(), 3u);  // dir, lock, the new ring; the ghost ring is gone
}

// Sets the seq of `topic`'s directory entry odd, as a peer writing over it
// (or a writer dying in the seqlock) leaves it. Returns false if not found.
bool LeaveTopicSeqOdd(const std::string& bus, internal::BusCore& core, const std::string& topic) {
  const std::optional<internal::TopicRecord> t = core.directory().FindLiveTopic(topic);
  if (!t) return false;
  auto region = internal::SharedRegion::Open(internal::DirectoryShmName(bus), false);
  if (!region.ok()) return false;
  auto* layout = reinterpret_cast<internal::DirectoryLayout*>(region->data());
  std::atomic_ref<uint64_t>(layout->topics[t->slot].seq).fetch_or(1);
  return true;
}

TEST(Liveness, ALiveTopicWhoseSeqWasLeftOddKeepsItsRecords) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  internal::BusCore& core = *bus->core();
  ASSERT_TRUE(bus->CreateTopic("kept", Small()).ok());
  auto producer = bus->CreateProducer("kept");
  ASSERT_TRUE(producer.ok());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(producer->TrySend(std::nullopt, "v" + std::to_string(i)).ok());
  }
  ASSERT_TRUE(LeaveTopicSeqOdd(*name, core, "kept"));
  EXPECT_TRUE(core.NeedsRepair());
  ASSERT_TRUE(bus->CreateTopic("other", Small()).ok());  // takes the lock: repairs
  EXPECT_FALSE(core.NeedsRepair());
  // Still the same topic, with the same ring and records; its producer too.
  EXPECT_TRUE(producer->CheckTopic().ok());
  ASSERT_TRUE(producer->TrySend(std::nullopt, "v100").ok());
  ConsumerOptions co;
  co.start = StartPosition::Earliest();
  auto consumer = bus->CreateConsumer("kept", co);
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  std::vector<std::string> got;
  (void)consumer->PollFor([&](const ConsumerRecord& r) { got.emplace_back(r.value()); }, 1000, 1s);
  ASSERT_EQ(got.size(), 101u);
  for (int i = 0; i <= 100; ++i) EXPECT_EQ(got[i], "v" + std::to_string(i));
}

// The same odd seq over a live entry whose ring file is gone is not a whole
// topic: the repair removes the entry (the name can be created again).
TEST(Liveness, ALiveTopicWithAnOddSeqAndNoRingIsRemoved) {
  ScopedBusName name;
  auto bus = Bus::Open(*name);
  ASSERT_TRUE(bus.ok());
  internal::BusCore& core = *bus->core();
  ASSERT_TRUE(bus->CreateTopic("lost", Small()).ok());
  const auto t = core.directory().FindLiveTopic("lost");
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(
      internal::SharedRegion::Remove(internal::RingShmName(*name, "lost", 0, t->generation)).ok());
  ASSERT_TRUE(LeaveTopicSeqOdd(*name, core, "lost"));
  ASSERT_TRUE(bus->CreateTopic("other", Small()).ok());  // repairs
  EXPECT_FALSE(core.NeedsRepair());
  EXPECT_EQ(bus->DescribeTopic("lost").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(bus->CreateTopic("lost", Small()).ok());
}

}  // namespace
}  // namespace runnel
