// `runnel consume TOPIC`: prints records, one per line, as they arrive.
//
// Output is flushed after every poll batch, so pipes see records at once.
// Stops after --max records, after --idle-exit-ms without a new record, on
// SIGINT/SIGTERM (the handler only sets a flag; the loop polls in slices of
// at most 100 ms), or quietly with exit 0 when the reader of stdout goes
// away (EPIPE).

#include <fmt/core.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "ipc/bus.h"
#include "ipc/consumer.h"
#include "tools/bus_util.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/record_format.h"

namespace runnel::cli {
namespace {

constexpr std::string_view kConsumeCmd = "consume";

struct ConsumeArgs {
  std::string topic;
  std::optional<uint32_t> partition;
  std::string from = "latest";
  std::string max;  // decimal (checked by CheckUint); empty: no limit
  std::optional<int64_t> idle_exit_ms;
  std::string format = "value";
  std::string key_separator = "\t";
  bool verify_crc = false;
};

// True if stdout is a pipe whose reader went away (e.g. `| head` exited):
// noticed while idle, not only at the next write (EPIPE).
bool StdoutClosed() {
  pollfd p{STDOUT_FILENO, 0, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

// Parses --from: earliest | latest | OFFSET | @EPOCH_MS.
std::string CheckFrom(const std::string& text) {
  if (text == "earliest" || text == "latest" || ParseUint(text)) return {};
  if (!text.empty() && text[0] == '@' && ParseUint(std::string_view(text).substr(1))) return {};
  const std::string_view number =
      !text.empty() && text[0] == '@' ? std::string_view(text).substr(1) : std::string_view(text);
  if (!number.empty() && number.find_first_not_of("0123456789") == std::string_view::npos) {
    return "'" + text + "' is too large";
  }
  return "'" + text +
         "' is not a start position: use earliest, latest, an offset (e.g. 42) or @EPOCH_MS "
         "(e.g. @1714566896000)";
}

// Writes `out` to stdout and flushes. False if the reader went away (EPIPE)
// or another write error happened (*error set then).
bool WriteOut(std::string& out, int* error) {
  if (!out.empty()) {
    std::size_t done = std::fwrite(out.data(), 1, out.size(), stdout);
    if (done != out.size()) {
      *error = errno;
      return false;
    }
    out.clear();
  }
  if (std::fflush(stdout) != 0) {
    *error = errno;
    return false;
  }
  return true;
}

int RunConsume(const GlobalOptions& global, const ConsumeArgs& args) {
  const std::optional<OutputFormat> format = ParseOutputFormat(args.format);
  if (!format) return kExitUsage;  // the option check refuses it first

  ConsumerOptions copts;
  if (args.partition) copts.partitions = {*args.partition};
  copts.verify_crc = args.verify_crc;
  if (args.from == "earliest") {
    copts.start = StartPosition::Earliest();
  } else if (args.from == "latest") {
    copts.start = StartPosition::Latest();
  } else if (args.from[0] == '@') {
    const uint64_t ms = *ParseUint(std::string_view(args.from).substr(1));
    if (ms > static_cast<uint64_t>(INT64_MAX / 1'000'000)) {
      PrintError(kConsumeCmd, fmt::format("--from {}: timestamp out of range", args.from));
      return kExitUsage;
    }
    copts.start = StartPosition::Timestamp(static_cast<int64_t>(ms) * 1'000'000);
  } else {
    copts.start = StartPosition::Offset(*ParseUint(args.from));
  }
  std::optional<Bus> bus = OpenExistingBus(global, kConsumeCmd);
  if (!bus) return kExitRuntime;
  // Where to look when records are damaged on disk: the data dir of the
  // broker that persists the bus.
  std::string data_dir = "DATA_DIR";
  if (Result<BusInfo> info = bus->Info(); info.ok() && !info->broker_data_dir.empty()) {
    data_dir = info->broker_data_dir;
  } else if (!global.data_dir.empty()) {
    data_dir = global.data_dir;
  }
  const std::string verify = fmt::format(
      "they are damaged on disk (see: runnel replay {}/{} --verify)", data_dir, args.topic);
  copts.on_overrun = [verify](const OverrunInfo& o) {
    const std::string unreadable = fmt::format(
        "the log could not be read ({}); they may still be there: fix that and read them with "
        "--from {}",
        o.error, o.from_offset);
    const char* why =
        o.cause == LossCause::kDamaged      ? verify.c_str()
        : o.cause == LossCause::kUnreadable ? unreadable.c_str()
        : o.cause == LossCause::kRetention
            ? "retention removed them from disk before they were read"
        : o.cause == LossCause::kNotPersisted
            ? "they are not in the log (lost before the broker persisted them, or cut from a "
              "damaged log by a repair; see the broker's output)"
            : "the consumer fell behind the ring and they could not be read from disk";
    PrintWarning(kConsumeCmd,
                 fmt::format("partition {}: lost {} record{} (offsets {}..{}): {}", o.partition,
                             o.lost_records, o.lost_records == 1 ? "" : "s", o.from_offset,
                             o.to_offset == 0 ? 0 : o.to_offset - 1, why));
  };

  Result<Consumer> consumer = bus->CreateConsumer(args.topic, copts);
  if (!consumer.ok()) {
    const Status& s = consumer.status();
    if (s.code() == StatusCode::kNotFound) {
      PrintError(kConsumeCmd, ExplainTopicNotFound(args.topic, global));
      return kExitRuntime;
    }
    PrintError(kConsumeCmd, s.message());
    return s.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitRuntime;
  }

  InstallStopHandlers(/*ignore_sigpipe=*/true);

  using Clock = std::chrono::steady_clock;
  const std::string sep = UnescapeSeparator(args.key_separator);
  uint64_t remaining = args.max.empty() ? UINT64_MAX : *ParseUint(args.max);
  uint64_t total = 0;
  auto last_record = Clock::now();
  std::string out;
  int write_error = 0;
  int rc = kExitOk;
  // --from @EPOCH_MS starts each partition at its first record stamped at
  // or after that time, or at its end if there is none yet. From the end on,
  // records stamped earlier (a time in the future, clocks of several
  // producers) are skipped until the first one at or after it arrives.
  std::optional<int64_t> not_before_ns;
  if (args.from[0] == '@')
    not_before_ns = static_cast<int64_t>(*ParseUint(args.from.substr(1))) * 1'000'000;
  std::array<bool, 64> reached{};  // per partition: a record at or after not_before_ns came
  uint32_t skipped = 0;
  auto handler = [&](const ConsumerRecord& r) {
    if (not_before_ns && !reached[r.partition() % 64]) {
      if (r.timestamp_ns() < *not_before_ns) {
        ++skipped;
        return;
      }
      reached[r.partition() % 64] = true;
    }
    AppendRecord(out, *format, r.topic(), r.partition(), r.view(), sep);
  };
  while (remaining > 0 && !StopRequested()) {
    auto slice = std::chrono::milliseconds(100);
    bool idle_over = false;  // a poll that finds nothing now ends the run
    if (args.idle_exit_ms) {
      const auto idle_left =
          std::chrono::milliseconds(*args.idle_exit_ms) -
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_record);
      idle_over = idle_left.count() <= 0;
      slice = std::clamp(idle_left, std::chrono::milliseconds(0), slice);
    }
    const uint32_t limit = static_cast<uint32_t>(std::min<uint64_t>(remaining, 1024));
    PollResult r = consumer->PollFor(handler, limit, slice);
    const uint32_t skipped_now = std::exchange(skipped, 0);
    r.records -= skipped_now;
    // A record skipped for --from @T is not idleness: the stream is live.
    if (skipped_now > 0) last_record = Clock::now();
    if (r.records > 0) {
      total += r.records;
      remaining -= std::min<uint64_t>(remaining, r.records);
      last_record = Clock::now();
      if (!WriteOut(out, &write_error)) break;
    }
    if (r.status == PollStatus::kTopicDeleted) {
      PrintError(kConsumeCmd, fmt::format("topic '{}' was deleted", args.topic));
      rc = kExitRuntime;
      break;
    }
    if (r.status == PollStatus::kCorrupt) {
      PrintError(kConsumeCmd, fmt::format("partition {}: a record in the ring failed validation "
                                          "(corrupt shared memory); stopping",
                                          r.partition));
      rc = kExitRuntime;
      break;
    }
    // Idle: a poll that found nothing (not one that only reported a loss).
    if (r.records == 0 && skipped_now == 0 && r.status == PollStatus::kOk &&
        (idle_over || StdoutClosed()))
      break;
  }
  if (write_error == 0) (void)WriteOut(out, &write_error);
  if (write_error != 0 && write_error != EPIPE) {
    PrintError(kConsumeCmd, fmt::format("cannot write to stdout: {}", std::strerror(write_error)));
    return kExitRuntime;
  }
  if (isatty(STDERR_FILENO)) fmt::print(stderr, "runnel consume: {}\n", Count(total, "record"));
  return rc;
}

}  // namespace

void RegisterConsume(CLI::App& app, const GlobalOptions& global) {
  CLI::App* sub = app.add_subcommand(
      "consume",
      "Print a topic's records to stdout, one per line, as they arrive. Records older than the "
      "ring are read from the data dir.");
  auto a = std::make_shared<ConsumeArgs>();
  sub->add_option("TOPIC", a->topic, "Topic to read")->required()->check(CheckTopicName);
  sub->add_option("--partition,-p", a->partition, "Read only this partition (default: all)")
      ->type_name("P")
      ->transform(Decimal());
  sub->add_option("--from", a->from,
                  "Where to start in each partition: earliest (oldest retained record, on disk "
                  "or in the ring), latest (only new records), an OFFSET, or @EPOCH_MS (first "
                  "record with timestamp >= that many ms since the epoch)")
      ->capture_default_str()
      ->type_name("POSITION")
      ->check(CheckFrom);
  sub->add_option("--max,-n", a->max, "Exit 0 after N records")->type_name("N")->check(CheckUint);
  sub->add_option("--idle-exit-ms", a->idle_exit_ms,
                  "Exit 0 after MS milliseconds without a new record")
      ->type_name("MS")
      ->transform(Decimal())
      ->check(CLI::Range(int64_t{0}, int64_t{INT64_MAX / 1'000'000}));
  sub->add_option("--format,-f", a->format,
                  "value (the value), kv (key SEP value) or json (one object per line: topic, "
                  "partition, offset, timestamp_ms, timestamp_ns, key, value, headers)")
      ->capture_default_str()
      ->check(CLI::IsMember({"value", "kv", "json"}));
  sub->add_option("--key-separator,-k", a->key_separator,
                  "Separator between key and value for --format kv (default: tab)")
      ->type_name("SEP")
      ->check([](const std::string& s) {
        return s.empty() ? std::string("the key separator must not be empty") : std::string();
      });
  sub->add_flag("--verify-crc", a->verify_crc, "CRC-check every record read from the ring");
  SetRunner(sub, [a, &global] { return RunConsume(global, *a); });
}

}  // namespace runnel::cli
