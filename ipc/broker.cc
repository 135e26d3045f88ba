#include "ipc/broker.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>

#include "core/log.h"
#include "core/record.h"
#include "core/wait.h"
#include "ipc/internal/bus_core.h"
#include "ipc/internal/housekeeper.h"
#include "ipc/internal/names.h"
#include "ipc/internal/process.h"
#include "ipc/internal/shm.h"

namespace runnel {

Broker::Broker(const Bus& bus, BrokerOptions options) : Broker(bus.core(), options) {}

Broker::Broker(std::shared_ptr<internal::BusCore> core, BrokerOptions options)
    : core_(std::move(core)), options_(options) {
  if (!core_) return;  // a moved-from Bus: Start and WaitReady say so
  if (options_.tick_ms <= 0) options_.tick_ms = core_->options().sweep_period_ms;
  if (options_.unblock_timeout_ms <= 0) {
    options_.unblock_timeout_ms = core_->options().unblock_timeout_ms;
  }
  if (options_.takeover_retry_ms <= 0) options_.takeover_retry_ms = 100;
  // Longer periods overflowed in nanoseconds (a huge unblock timeout
  // unblocked live claims at once, a huge tick spun).
  constexpr int64_t kYearMs = int64_t{365} * 24 * 3600 * 1000;
  options_.tick_ms = std::min(options_.tick_ms, kYearMs);
  options_.unblock_timeout_ms = std::min(options_.unblock_timeout_ms, kYearMs);
  options_.takeover_retry_ms = std::min(options_.takeover_retry_ms, kYearMs);
  housekeeper_ =
      std::make_unique<internal::Housekeeper>(core_, options_.unblock_timeout_ms * 1'000'000);
}

Broker::~Broker() { Stop(); }

void Broker::AddHooks(std::shared_ptr<BrokerHooks> hooks) {
  std::lock_guard<std::mutex> lk(mu_);
  if (hooks) hooks_.push_back(std::move(hooks));
}

bool Broker::TryBecomeActive() {
  if (!lock_->TryLock()) return false;
  const internal::ProcessIdentity self = internal::SelfIdentity();
  internal::Directory& dir = core_->directory();
  dir.WriteBroker(self.pid, self.start_time, MonotonicNanos());
  // Processes given no data dir use this one (BusOptions::data_dir); one
  // recorded by an earlier broker stays when this one has none.
  if (const std::string& data_dir = core_->options().data_dir; !data_dir.empty()) {
    // Records an earlier broker persisted elsewhere are not in this data dir:
    // say where they are (the persister then reports the offsets between).
    const internal::DataDirRecord recorded = dir.ReadDataDir();
    const std::string& previous = recorded.path;
    std::error_code ec;
    if (!previous.empty() && previous != data_dir &&
        !(std::filesystem::equivalent(previous, data_dir, ec) && !ec)) {
      if (recorded.epoch == 0) {  // recorded by a client (BusCore::RecordDataDir)
        Log(LogLevel::kWarning,
            "runnel broker: bus '%s' had topics created with data dir %s, this broker persists "
            "to %s: their logs are in %s",
            core_->name().c_str(), previous.c_str(), data_dir.c_str(), previous.c_str());
      } else {
        Log(LogLevel::kWarning,
            "runnel broker: bus '%s' was last persisted to %s, this broker persists to %s: the "
            "records its earlier brokers wrote are in %s",
            core_->name().c_str(), previous.c_str(), data_dir.c_str(), previous.c_str());
      }
    }
    // Under the directory lock: a client that finds no live broker records
    // its data dir too (BusCore::RecordDataDir).
    Result<internal::BusCore::Guard> guard = core_->Lock();
    dir.WriteDataDir(data_dir, dir.ReadBroker().epoch);
  }
  // Relaxed: a status flag for IsActive(); nothing is published through it.
  active_.store(true, std::memory_order_relaxed);
  return true;
}

Status Broker::Start(BrokerMode mode) {
  if (!core_) return internal::MovedFrom("Bus (the broker's)");
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (thread_.joinable()) return Status::FailedPrecondition("the broker is already started");
    stop_ = false;
    ready_ = false;
  }
  Result<internal::LockFile> lock =
      internal::LockFile::Open(internal::BrokerLockPath(core_->name()),
                               /*create=*/true, core_->file_mode());
  if (!lock.ok()) return lock.status();
  lock_ = std::make_unique<internal::LockFile>(std::move(*lock));
  if (mode == BrokerMode::kExclusive && !TryBecomeActive()) {
    const internal::BrokerRecord b = core_->directory().ReadBroker();
    lock_.reset();
    std::string who = b.pid != 0 ? " (pid " + std::to_string(b.pid) + ")" : "";
    return Status::AlreadyExists("a broker is already active for bus '" + core_->name() + "'" +
                                 who + "; stop it first (only one broker runs per bus)");
  }
  // Relaxed: status flag.
  running_.store(true, std::memory_order_relaxed);
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    running_.store(false, std::memory_order_relaxed);  // relaxed: status flag
    if (IsActive()) core_->directory().ClearBroker(internal::SelfIdentity().pid, WallClockNanos());
    active_.store(false, std::memory_order_relaxed);  // relaxed: status flag
    lock_.reset();
    return Status::ResourceExhausted(std::string("cannot start the broker thread: ") + e.what());
  }
  return Status::Ok();
}

void Broker::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    ready_ = false;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  lock_.reset();                                     // closing the file drops the broker lock
  running_.store(false, std::memory_order_relaxed);  // relaxed: status flag
}

Status Broker::WaitReady(std::chrono::milliseconds timeout) {
  if (!core_) return internal::MovedFrom("Bus (the broker's)");
  // wait_for adds the timeout to now(): a century stands for any longer one
  // (milliseconds::max() overflowed and returned at once).
  const std::chrono::milliseconds wait =
      std::min<std::chrono::milliseconds>(timeout, std::chrono::hours(24 * 365 * 100));
  std::unique_lock<std::mutex> lk(mu_);
  if (!IsRunning() || stop_) {
    return Status::FailedPrecondition("the broker of bus '" + core_->name() + "' is not running");
  }
  if (!cv_.wait_for(lk, wait, [this] { return ready_ || stop_; })) {
    return Status::Timeout(
        "the broker of bus '" + core_->name() + "' was not ready after " +
        std::to_string(timeout.count()) + " ms" +
        (IsActive() ? " (still in its first tick)" : " (standing by: another broker is active)"));
  }
  if (!ready_) {
    return Status::FailedPrecondition("the broker of bus '" + core_->name() +
                                      "' stopped before it was ready");
  }
  return Status::Ok();
}

bool Broker::IsActive() const { return active_.load(std::memory_order_relaxed); }
bool Broker::IsRunning() const { return running_.load(std::memory_order_relaxed); }

Broker::Stats Broker::stats() const {
  // Relaxed: counters for display and tests.
  return {ticks_.load(std::memory_order_relaxed), reaped_.load(std::memory_order_relaxed),
          unblocked_.load(std::memory_order_relaxed)};
}

void Broker::Run() {
  std::vector<std::shared_ptr<BrokerHooks>> hooks;
  {
    std::lock_guard<std::mutex> lk(mu_);
    hooks = hooks_;
  }
  const auto tick = std::chrono::milliseconds(options_.tick_ms);
  const int64_t retry_ns = options_.takeover_retry_ms * 1'000'000;
  int64_t next_try_ns = 0;
  bool announced = false;
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    lk.unlock();
    const int64_t now = MonotonicNanos();
    if (!IsActive() && now >= next_try_ns) {
      (void)TryBecomeActive();
      next_try_ns = now + retry_ns;
    }
    housekeeper_->HeartbeatOwn(now);
    if (IsActive()) {
      if (!announced) {
        announced = true;
        const BrokerContext context{core_->name(), core_->options().data_dir};
        for (const auto& h : hooks) h->OnBecameActive(context);
      }
      const internal::Housekeeper::TickResult r = housekeeper_->Tick(now, hooks);
      core_->directory().StoreBrokerHeartbeat(now);
      for (const auto& h : hooks) h->OnTick(now);
      // Relaxed: counters.
      reaped_.fetch_add(r.clients_reaped, std::memory_order_relaxed);
      unblocked_.fetch_add(r.claims_unblocked, std::memory_order_relaxed);
      ticks_.fetch_add(1, std::memory_order_relaxed);
    }
    lk.lock();
    if (IsActive() && !ready_ && !stop_) {
      ready_ = true;
      cv_.notify_all();  // WaitReady
    }
    cv_.wait_for(lk, tick, [this] { return stop_; });
  }
  lk.unlock();
  if (IsActive()) {
    housekeeper_->DropAll(hooks);
    for (const auto& h : hooks) h->Stop();
    core_->directory().ClearBroker(internal::SelfIdentity().pid, WallClockNanos());
    active_.store(false, std::memory_order_relaxed);  // relaxed: status flag
  }
}

}  // namespace runnel
