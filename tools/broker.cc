// `runnel broker`: the bus's housekeeping and persistence in the foreground.
//
// SIGINT and SIGTERM are blocked in every thread before the broker starts
// and taken with sigwait() in main, so no signal handler runs and the broker
// thread is never interrupted; Stop() then flushes (writes, fdatasync,
// checkpoint) before the process exits 0.

#include "ipc/broker.h"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "ipc/bus.h"
#include "ipc/durability.h"
#include "ipc/internal/names.h"
#include "persistence/persister.h"
#include "tools/bus_util.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/metrics_exporter.h"

namespace runnel::cli {
namespace {

std::string AnotherBrokerIsActive(const std::string& bus, int32_t pid) {
  return fmt::format(
      "another broker is already active on bus '{}' (pid {}); stop it first (kill -TERM {}), or "
      "use another --bus",
      bus, pid, pid);
}

struct BrokerArgs {
  std::string fsync;  // empty: each topic's own policy
  bool repair = false;
  std::optional<uint16_t> metrics_port;
  std::string metrics_address = "127.0.0.1";
};

// Whether something listens on ADDRESS:PORT already (ADDRESS: IPv4, as the
// option's check ensures): checked before the bus is opened, so that a port
// in use leaves nothing behind in /dev/shm. (The exporter's own bind, later,
// settles a race.)
bool PortInUse(const std::string& address, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &sa.sin_addr) != 1) return false;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool in_use =
      ::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0 && errno == EADDRINUSE;
  ::close(fd);
  return in_use;
}

int RunBroker(const GlobalOptions& global, const BrokerArgs& args) {
  constexpr std::string_view kCmd = "broker";
  std::optional<SyncPolicy> fsync_override;
  if (!args.fsync.empty()) {
    Result<SyncPolicy> p = SyncPolicy::Parse(args.fsync);
    if (!p.ok()) {  // already validated by the option check
      PrintError(kCmd, p.status().message());
      return kExitUsage;
    }
    fsync_override = *p;
  }

  // Block the stop signals before any thread exists: every thread inherits
  // the mask, so only sigwait below ever takes them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (int err = pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr); err != 0) {
    PrintError(kCmd, fmt::format("cannot block SIGINT/SIGTERM: {}", std::strerror(err)));
    return kExitRuntime;
  }

  BusOptions bus_options;
  bus_options.create_if_missing = true;
  bus_options.embedded_broker = false;
  bus_options.data_dir = global.data_dir;
  // Checked first, so that a data dir other than the running broker's is not
  // what the user hears about. Start(kExclusive) below settles races.
  if (const int32_t pid = RunningBrokerPid(global.bus); pid > 0) {
    PrintError(kCmd, AnotherBrokerIsActive(global.bus, pid));
    return kExitRuntime;
  }
  if (args.metrics_port && *args.metrics_port != 0 &&
      PortInUse(args.metrics_address, static_cast<uint16_t>(*args.metrics_port))) {
    PrintError(kCmd, fmt::format("cannot serve metrics on {}:{}: the port is in use (choose "
                                 "another --metrics-port)",
                                 args.metrics_address, *args.metrics_port));
    return kExitRuntime;
  }
  // A broker that cannot persist is of no use to durable topics: refuse to
  // start rather than run and fail every producer later. Checked before the
  // bus is opened too, so a bad --data-dir leaves no bus behind in /dev/shm.
  auto usable_data_dir = [&](const std::string& dir) {
    if (dir.empty()) return true;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!ec && !std::filesystem::is_directory(dir, ec)) {
      ec = std::make_error_code(std::errc::not_a_directory);
    }
    if (!ec) return true;
    PrintError(kCmd, fmt::format("cannot use data dir {}: {} (choose a directory this user can "
                                 "create and write with --data-dir)",
                                 dir, ec.message()));
    return false;
  };
  if (!usable_data_dir(global.data_dir)) return kExitRuntime;
  Result<Bus> bus = Bus::Open(global.bus, bus_options);
  if (!bus.ok()) {
    PrintError(kCmd, ExplainBusOpen(bus.status(), global.bus));
    return kExitRuntime;
  }
  NoteOtherDataDir(kCmd, global, *bus);
  if (!usable_data_dir(bus->data_dir())) return kExitRuntime;

  // The bus's directory file as opened: the main loop below checks once a
  // second that it is still the one it started on. `runnel bus remove
  // --force` (or a reboot's cleaner) removes its files: a broker running on
  // would keep the logs locked, and the next broker of a new bus of that
  // name could not persist.
  const std::string dir_file = "/dev/shm/" + internal::DirectoryShmName(global.bus);
  auto identity = [&dir_file]() -> std::optional<std::pair<dev_t, ino_t>> {
    struct stat st {};
    if (::stat(dir_file.c_str(), &st) != 0) return std::nullopt;
    return std::make_pair(st.st_dev, st.st_ino);
  };
  const std::optional<std::pair<dev_t, ino_t>> started_on = identity();

  Broker broker(*bus);
  DurabilityOptions durability;
  durability.data_dir = bus->data_dir();
  durability.fsync_override = fsync_override;
  durability.repair = args.repair;
  broker.AddHooks(MakeDurabilityHooks(durability));

  // Before the broker starts, so that a port in use changes nothing.
  std::unique_ptr<MetricsExporter> metrics;  // stops before the bus goes
  if (args.metrics_port) {
    Result<std::unique_ptr<MetricsExporter>> m =
        MetricsExporter::Start(*bus, args.metrics_address, *args.metrics_port);
    if (!m.ok()) {
      PrintError(kCmd, m.status().message() + (m.status().code() == StatusCode::kUnavailable
                                                   ? " (choose another --metrics-port)"
                                                   : ""));
      return kExitRuntime;
    }
    metrics = std::move(*m);
    fmt::print(stderr, "runnel broker: metrics at http://{}:{}/metrics\n", args.metrics_address,
               metrics->port());
  }

  if (Status s = broker.Start(BrokerMode::kExclusive); !s.ok()) {
    if (s.code() == StatusCode::kAlreadyExists) {
      // One that started at the same moment may hold the broker lock without
      // having recorded its pid yet: give it a second to.
      int32_t pid = 0;
      for (int i = 0; i < 100 && pid <= 0; ++i) {
        if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        Result<BusInfo> info = bus->Info();
        pid = info.ok() ? info->broker_pid : 0;
      }
      if (pid > 0) {
        PrintError(kCmd, AnotherBrokerIsActive(global.bus, pid));
      } else {
        PrintError(kCmd, fmt::format("another broker is starting on bus '{}'; stop it first, or "
                                     "use another --bus",
                                     global.bus));
      }
    } else {
      PrintError(kCmd,
                 fmt::format("cannot start the broker on bus '{}': {}", global.bus, s.ToString()));
    }
    return kExitRuntime;
  }

  // Announce only after the first tick: by then the hooks have restored the
  // topics found in the data dir and taken over every live topic, so a
  // script that waits for the line below can use them at once.
  // Recovering large logs can take a while: say so, and keep waiting (a
  // stop signal stays pending until sigwait below takes it).
  for (bool said = false;;) {
    const Status ready = broker.WaitReady(std::chrono::seconds(10));
    if (ready.ok()) break;
    if (ready.code() != StatusCode::kTimeout) {
      PrintError(kCmd, fmt::format("the broker on bus '{}' did not start: {}", global.bus,
                                   ready.ToString()));
      return kExitRuntime;
    }
    if (!said) {
      fmt::print(stderr, "runnel broker: still restoring topics from {} ...\n", bus->data_dir());
      std::fflush(stderr);
      said = true;
    }
  }

  std::string policy = fsync_override ? fsync_override->ToString() : "per topic";
  fmt::print(stderr,
             "runnel broker: active on bus '{}' (pid {}), persisting to {} (fsync: {}); stop with "
             "Ctrl-C or SIGTERM\n",
             global.bus, getpid(), bus->data_dir(), policy);
  std::fflush(stderr);

  bool removed = false;
  int signal_number = 0;
  for (;;) {
    const timespec second{1, 0};
    signal_number = sigtimedwait(&stop_signals, nullptr, &second);
    if (signal_number > 0) break;
    if (!started_on || identity() != started_on) {  // gone already when it started, too
      removed = true;
      break;
    }
  }
  if (removed) {
    fmt::print(stderr,
               "runnel broker: bus '{}' was removed from /dev/shm (runnel bus remove --force?): "
               "flushing and stopping; start a broker again for the bus now there\n",
               global.bus);
  } else {
    fmt::print(stderr, "runnel broker: {} received, flushing and stopping\n",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  }
  std::fflush(stderr);
  broker.Stop();
  // What this broker leaves unwritten stays in shared memory for the next
  // one; say so, and fail when it was the disk (or damage) that kept it.
  bool failed = false;
  if (Result<std::vector<TopicInfo>> topics = bus->ListTopics(); topics.ok()) {
    for (const TopicInfo& listed : *topics) {
      Result<TopicInfo> t = bus->DescribeTopic(listed.name);  // with the partitions
      if (!t.ok()) continue;
      for (const PartitionInfo& p : t->partitions) {
        // Its log directory was removed under it: what it wrote since is gone.
        failed = failed || p.persist_error == ENOENT;
        if (!p.written_offset || *p.written_offset >= p.next_offset) continue;
        const uint64_t left = p.next_offset - *p.written_offset;
        if (removed) {
          fmt::print(stderr,
                     "runnel broker: {}/{}: {} (offsets {}..{}) not written to disk; the bus's "
                     "shared memory was removed, and {} with it\n",
                     t->name, p.partition, Count(left, "record"), *p.written_offset,
                     p.next_offset - 1, left == 1 ? "it is lost" : "they are lost");
          failed = true;
          continue;
        }
        fmt::print(stderr,
                   "runnel broker: {}/{}: {} (offsets {}..{}) not written to disk{}; {} in "
                   "shared memory, and the next broker on bus '{}' writes {}{}\n",
                   t->name, p.partition, Count(left, "record"), *p.written_offset,
                   p.next_offset - 1,
                   p.persist_error != 0 ? fmt::format(" ({})", PersistErrorText(p.persist_error))
                                        : std::string(),
                   left == 1 ? "it stays" : "they stay", global.bus, left == 1 ? "it" : "them",
                   p.persist_error == EILSEQ
                       ? " once the cause above is mended (never, if their offsets clash with the "
                         "log's or a record before them was written over)"
                   : p.persist_error != 0 ? " once the cause above is gone"
                                          : "");
        failed = failed || p.persist_error != 0;
      }
    }
  }
  fmt::print(stderr, "runnel broker: stopped\n");
  return failed || removed ? kExitRuntime : kExitOk;
}

}  // namespace

void RegisterBroker(CLI::App& app, const GlobalOptions& global) {
  CLI::App* sub = app.add_subcommand(
      "broker",
      "Run the bus's broker in the foreground: housekeeping (liveness, dead-claim unblocking) and "
      "persistence of every durable topic to DATA_DIR/<topic>/<partition>/. Re-creates topics "
      "found in the data dir. Stops on SIGINT/SIGTERM after flushing.");
  auto args = std::make_shared<BrokerArgs>();
  sub->add_option("--fsync", args->fsync,
                  "Override every topic's fsync policy: never | interval:MS | always")
      ->type_name("POLICY")
      ->check([](const std::string& text) -> std::string {
        Result<SyncPolicy> p = SyncPolicy::Parse(text);
        return p.ok() ? std::string() : p.status().message();
      });
  sub->add_flag("--repair", args->repair,
                "Open a partition log that recovery finds damaged (a segment cut short, a "
                "record that fails its CRC mid-log) by cutting it at the damage: the records "
                "after it are lost, the partition continues. Without it such a partition "
                "stops persisting and says why.");
  sub->add_option("--metrics-port", args->metrics_port,
                  "Serve the bus's metrics (as stat --format prometheus) at "
                  "http://ADDRESS:PORT/metrics while the broker runs; 0: any free port (the "
                  "broker prints which)")
      ->type_name("PORT")
      ->transform(Decimal())
      ->check(CLI::Range(0, 65535));
  sub->add_option("--metrics-address", args->metrics_address,
                  "Address the metrics endpoint listens on (0.0.0.0: every interface)")
      ->capture_default_str()
      ->type_name("ADDRESS")
      ->check([](const std::string& a) -> std::string {
        // IPv4 only: Debian's CivetWeb (under prometheus-cpp) cannot listen
        // on IPv6 ("[::1]:PORT" fails inside it, after the bus was made).
        in_addr buf{};
        if (::inet_pton(AF_INET, a.c_str(), &buf) == 1) return "";
        return "'" + a +
               "' is not an IPv4 address (such as 127.0.0.1 or 0.0.0.0; the metrics "
               "endpoint does not serve IPv6)";
      });
  SetRunner(sub, [args, &global] { return RunBroker(global, *args); });
}

}  // namespace runnel::cli
