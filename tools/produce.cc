// `runnel produce TOPIC`: one record per stdin line.
//
// Delivery (docs/cli.md):
//  - at-most-once: a record is accepted once it is committed into the ring.
//    Nothing is retried.
//  - at-least-once: a record is accepted once it is durable (the broker wrote
//    it and synced it per the topic's fsync policy). Sent records wait in a
//    pending list; before blocking on stdin, and whenever the list grows
//    large, the producer waits for the highest pending offset of each
//    partition to become durable (durability is in offset order). When the
//    wait times out (--timeout-ms), the records that are still not durable
//    are sent again (--retries times): the first copies may still be
//    persisted later, so duplicates are possible, losses are not.

#include <fmt/core.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ipc/bus.h"
#include "ipc/producer.h"
#include "tools/bus_util.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/record_format.h"

namespace runnel::cli {
namespace {

constexpr std::string_view kProduceCmd = "produce";

struct ProduceArgs {
  std::string topic;
  std::optional<uint32_t> partition;
  std::string key_separator;  // empty: no keys
  std::string delivery;       // empty: at-least-once for durable topics, else at-most-once
  int64_t timeout_ms = 5000;
  uint32_t retries = 3;
  std::vector<std::string> headers;  // NAME=VALUE
};

// Reads newline-separated lines from a file descriptor with its own buffer,
// so the caller can tell "a line is buffered" from "the next line needs a
// (possibly blocking) read".
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}

  // The next complete buffered line (without '\n'); at the end of the input
  // also a final line without '\n', but not when a stop signal ended it (the
  // rest of that line may still have been coming). Valid until the next call.
  std::optional<std::string_view> NextBuffered() {
    const std::size_t nl = buffer_.find('\n', start_);
    if (nl != std::string::npos) {
      std::string_view line(buffer_.data() + start_, nl - start_);
      start_ = nl + 1;
      return line;
    }
    if (eof_ && !stopped_ && start_ < buffer_.size()) {
      std::string_view line(buffer_.data() + start_, buffer_.size() - start_);
      start_ = buffer_.size();
      return line;
    }
    return std::nullopt;
  }

  // True if a read would not block (data or EOF waiting).
  bool ReadReady() const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

  // Reads more input (blocking). False at EOF or on error (error() says).
  bool Fill() {
    if (eof_) return false;
    if (start_ > 0) {
      buffer_.erase(0, start_);
      start_ = 0;
    }
    const std::size_t old = buffer_.size();
    buffer_.resize(old + kChunk);
    for (;;) {
      // Waits in slices, so that a stop signal that came before the wait
      // (not only one that interrupts it) ends the input.
      pollfd p{fd_, POLLIN, 0};
      while (!StopRequested() && ::poll(&p, 1, 100) == 0) {
      }
      if (StopRequested()) {
        // SIGINT/SIGTERM: the end of the input (what was read is sent).
        buffer_.resize(old);
        eof_ = true;
        stopped_ = true;
        return false;
      }
      const ssize_t n = ::read(fd_, buffer_.data() + old, kChunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error_ = errno;
        n_ = 0;
      } else {
        n_ = static_cast<std::size_t>(n);
      }
      break;
    }
    buffer_.resize(old + n_);
    if (n_ == 0) eof_ = true;
    return n_ > 0;
  }

  bool eof() const { return eof_; }
  int error() const { return error_; }
  // Bytes buffered after the last complete line: the start of a line whose
  // newline has not been read yet.
  std::size_t partial() const { return buffer_.size() - start_; }

 private:
  static constexpr std::size_t kChunk = 1 << 16;
  int fd_;
  std::string buffer_;
  std::size_t start_ = 0;
  std::size_t n_ = 0;
  bool eof_ = false;
  bool stopped_ = false;  // eof_ by SIGINT/SIGTERM
  int error_ = 0;
};

struct PendingRecord {
  std::optional<std::string> key;
  std::string value;
  uint32_t partition = 0;
  uint64_t offset = 0;
};

class Run {
 public:
  Run(const GlobalOptions& global, const ProduceArgs& args, Bus& bus, Producer& producer,
      bool at_least_once, std::vector<Header> headers, uint64_t max_record_bytes)
      : global_(global),
        args_(args),
        bus_(bus),
        producer_(producer),
        at_least_once_(at_least_once),
        headers_(std::move(headers)),
        max_record_bytes_(max_record_bytes),
        timeout_(std::chrono::milliseconds(args.timeout_ms)) {}

  int Go() {
    const auto start = std::chrono::steady_clock::now();
    LineReader in(STDIN_FILENO);
    const std::string sep = UnescapeSeparator(args_.key_separator);
    bool failed = false;
    while (!failed) {
      std::optional<std::string_view> line = in.NextBuffered();
      if (!line) {
        if (in.eof() || StopRequested()) break;  // lines already read are all sent
        // About to block on stdin: settle what is pending first, so an
        // interactive user sees each line acknowledged.
        if (at_least_once_ && !pending_.empty() && !in.ReadReady() && !SettlePending()) {
          failed = true;
          break;
        }
        // Around each read of stdin (which may block for long): a producer
        // learns of a deleted topic only every few hundred records by
        // itself, and this also keeps its heartbeat fresh.
        if (!TopicStillThere()) {
          failed = true;
          break;
        }
        // A line already longer than any record can be is refused now, not
        // once its newline comes (which may be never: a binary file).
        if (in.partial() > max_record_bytes_ + sep.size()) {
          RefuseLongLine(in.partial());
          failed = true;
          break;
        }
        if (!in.Fill() && in.error() != 0) {
          PrintError(kProduceCmd, fmt::format("cannot read stdin: {}", std::strerror(in.error())));
          failed = true;
        }
        if (!TopicStillThere()) {
          failed = true;
          break;
        }
        continue;
      }
      ++line_number_;
      std::optional<std::string_view> key;
      std::string_view value = *line;
      if (!sep.empty()) {
        const std::size_t at = line->find(sep);
        if (at != std::string_view::npos) {
          key = line->substr(0, at);
          value = line->substr(at + sep.size());
        }
      }
      if (!SendOne(key, value, args_.partition.value_or(kAnyPartition), /*resend=*/false)) {
        failed = true;
        break;
      }
      if (at_least_once_ &&
          (pending_.size() >= kMaxPending || pending_bytes_ >= kMaxPendingBytes) &&
          !SettlePending()) {
        failed = true;
      }
    }
    if (!failed && at_least_once_ && !pending_.empty() && !SettlePending()) failed = true;
    if (!failed && StopRequested() && in.partial() > 0) {
      fmt::print(stderr,
                 "runnel produce: stopped in the middle of line {}: its {} bytes read so far "
                 "(no end of line yet) were not sent\n",
                 line_number_ + 1, in.partial());
    }
    // Stopped by a line that cannot be a record (too large, bad key): the
    // lines before it were sent and are waited for like at the end of input,
    // so the summary says which are durable and a rerun can start after them.
    if (failed && record_rejected_ && at_least_once_ && !pending_.empty()) (void)SettlePending();
    // Stopped early: what became durable meanwhile counts as durable.
    if (failed && at_least_once_) (void)CountDurableNow();

    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double safe = seconds > 0 ? seconds : 1e-9;
    std::string delivery =
        at_least_once_ ? (failed ? fmt::format("at-least-once: {} durable, {} not confirmed",
                                               durable_, accepted_ - durable_)
                                 : fmt::format("at-least-once: all durable"))
                       : std::string("at-most-once");
    if (resent_ > 0) {
      delivery += fmt::format(", {} resent after timeouts (duplicates possible)", resent_);
    }
    // Records and bytes of the same set: durable ones for at-least-once.
    const uint64_t bytes = at_least_once_ ? durable_bytes_ : bytes_;
    fmt::print(stderr, "runnel produce: {}, {} in {:.3f} s ({:.0f} records/s, {}/s); {}\n",
               Count(at_least_once_ ? durable_ : accepted_, "record"), FormatSize(bytes), seconds,
               static_cast<double>(at_least_once_ ? durable_ : accepted_) / safe,
               FormatSize(static_cast<uint64_t>(static_cast<double>(bytes) / safe)), delivery);
    return failed ? kExitRuntime : kExitOk;
  }

 private:
  static constexpr std::size_t kMaxPending = 8192;
  static constexpr uint64_t kMaxPendingBytes = 32ull << 20;

  // Sends one record; false (error printed) if it was not accepted.
  bool SendOne(std::optional<std::string_view> key, std::string_view value, uint32_t partition,
               bool resend) {
    SendResult r = producer_.Send(key, value, headers_, partition, timeout_);
    if (r.status == SendStatus::kUnblocked && at_least_once_) {
      // Our claim was declared dead (we stalled past the unblock timeout):
      // the record was lost before anyone saw it; send it again.
      r = producer_.Send(key, value, headers_, partition, timeout_);
    }
    // A ring that stays full because the broker cannot write to a full disk
    // empties by itself once there is space: wait for it --retries more
    // times, as for durability (nothing was sent, so nothing is duplicated).
    // Once the disk was seen full, the waits go on after the error clears:
    // the broker then still has the ring to write out.
    full_waits_ = 1;
    bool disk_full = false;
    while ((r.status == SendStatus::kFull || r.status == SendStatus::kTimeout) &&
           full_waits_ <= args_.retries &&
           (disk_full = disk_full || PersistError(r.partition) == ENOSPC)) {
      ++full_waits_;
      r = producer_.Send(key, value, headers_, partition, timeout_);
    }
    if (!r.ok()) {
      ReportSendFailure(r);
      return false;
    }
    if (!resend) {
      ++accepted_;
      bytes_ += value.size() + (key ? key->size() : 0);
    } else {
      ++resent_;
    }
    if (at_least_once_) {
      PendingRecord p;
      if (key) p.key = std::string(*key);
      p.value = std::string(value);
      p.partition = r.partition;
      p.offset = r.offset;
      pending_bytes_ += p.value.size() + (p.key ? p.key->size() : 0);
      pending_.push_back(std::move(p));
    }
    return true;
  }

  // The errno that stops the broker persisting `partition` (ENOSPC, EIO),
  // or 0.
  int32_t PersistError(uint32_t partition) {
    Result<TopicInfo> t = bus_.DescribeTopic(args_.topic);
    if (!t.ok() || partition >= t->partitions.size()) return 0;
    return t->partitions[partition].persist_error;
  }

  void ReportSendFailure(const SendResult& r) {
    const std::string where = fmt::format("line {}", line_number_);
    record_rejected_ = r.status == SendStatus::kTooLarge || r.status == SendStatus::kInvalid;
    switch (r.status) {
      case SendStatus::kTimeout:
      case SendStatus::kFull: {
        Result<BusInfo> info = bus_.Info();
        if (info.ok() && !info->broker_alive) {
          PrintError(
              kProduceCmd,
              fmt::format("{}: no broker is running for bus '{}' (start one with: {} "
                          "broker): partition {} of topic '{}' is full of records "
                          "that are not on disk yet",
                          where, global_.bus, RunnelCommand(global_), r.partition, args_.topic));
        } else if (const int32_t err = PersistError(r.partition); err != 0) {
          PrintError(kProduceCmd,
                     fmt::format("{}: partition {} of topic '{}' stayed full for {} x {} ms: the "
                                 "broker cannot write it to disk ({}){}; see: {} stat",
                                 where, r.partition, args_.topic, full_waits_, args_.timeout_ms,
                                 std::strerror(err),
                                 err == ENOSPC ? ": free space in the data dir, and the "
                                                 "broker continues by itself"
                                               : "",
                                 RunnelCommand(global_)));
        } else {
          PrintError(kProduceCmd,
                     fmt::format("{}: partition {} of topic '{}' stayed full for {} ms: the "
                                 "broker is not keeping up; raise --timeout-ms, or see: {} "
                                 "stat",
                                 where, r.partition, args_.topic, args_.timeout_ms,
                                 RunnelCommand(global_)));
        }
        return;
      }
      case SendStatus::kTopicDeleted:
        PrintError(kProduceCmd,
                   fmt::format("{}: topic '{}' was deleted while producing", where, args_.topic));
        return;
      default:
        PrintError(kProduceCmd, fmt::format("{}: {}", where, producer_.Explain(r).message()));
    }
  }

  void RefuseLongLine(std::size_t read_so_far) {
    record_rejected_ = true;
    PrintError(kProduceCmd,
               fmt::format("line {}: record of more than {} bytes (key + headers + value; {} "
                           "read so far, no end of line yet) exceeds the max record size {} of "
                           "topic '{}' (records are never truncated: send a smaller one, or "
                           "re-create the topic with a larger max record size)",
                           line_number_ + 1, max_record_bytes_, read_so_far, max_record_bytes_,
                           args_.topic));
  }

  // False (and says so) once the topic was deleted.
  bool TopicStillThere() {
    if (producer_.CheckTopic().ok()) return true;
    PrintError(kProduceCmd,
               fmt::format("topic '{}' was deleted while producing (after line {}); the "
                           "records sent after the delete are lost",
                           args_.topic, line_number_));
    return false;
  }

  // Counts the pending records that are durable already (no waiting) and
  // keeps the others pending; returns how many became durable.
  std::size_t CountDurableNow() {
    std::vector<PendingRecord> left;
    for (PendingRecord& p : pending_) {
      if (!producer_.WaitDurable(p.partition, p.offset, std::chrono::nanoseconds(0)).ok()) {
        left.push_back(std::move(p));
      }
    }
    const std::size_t now_durable = pending_.size() - left.size();
    durable_ += now_durable;
    pending_ = std::move(left);
    const uint64_t was_pending = pending_bytes_;
    pending_bytes_ = 0;
    for (const PendingRecord& p : pending_) {
      pending_bytes_ += p.value.size() + (p.key ? p.key->size() : 0);
    }
    durable_bytes_ += was_pending - pending_bytes_;
    return now_durable;
  }

  // Waits until every pending record is durable, resending on timeouts.
  bool SettlePending() {
    std::string last_problem;
    bool resent = false;  // some attempt sent records again
    for (uint32_t attempt = 0;; ++attempt) {
      const auto deadline = std::chrono::steady_clock::now() + timeout_;
      std::map<uint32_t, uint64_t> highest;
      for (const PendingRecord& p : pending_) {
        uint64_t& h = highest[p.partition];
        h = std::max(h, p.offset);
      }
      bool all = true;
      bool disk_full = false;
      for (const auto& [partition, offset] : highest) {
        for (;;) {
          const auto left =
              std::max(std::chrono::nanoseconds(0),
                       std::chrono::nanoseconds(deadline - std::chrono::steady_clock::now()));
          Status s = producer_.WaitDurable(partition, offset, left);
          if (s.ok()) break;
          if (s.code() == StatusCode::kResourceExhausted && left.count() > 0) {
            // The broker reports a full disk: keep waiting for space until
            // the deadline, then report it.
            last_problem = s.message();
            disk_full = true;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            continue;
          }
          if (s.code() == StatusCode::kNotFound) {
            // The records that became durable before the delete count as
            // durable, here and in the summary.
            (void)CountDurableNow();
            PrintError(kProduceCmd,
                       fmt::format("topic '{}' was deleted while producing (after line {}); {} "
                                   "not confirmed durable",
                                   args_.topic, line_number_, Count(pending_.size(), "record")));
            return false;
          }
          if (s.code() == StatusCode::kUnavailable) {
            PrintError(kProduceCmd, fmt::format("cannot confirm durability on topic '{}': {}",
                                                args_.topic, s.message()));
            return false;
          }
          if (s.code() != StatusCode::kTimeout && s.code() != StatusCode::kResourceExhausted) {
            PrintError(kProduceCmd, fmt::format("waiting for durability failed: {}", s.ToString()));
            return false;
          }
          if (s.code() == StatusCode::kTimeout && last_problem.empty()) last_problem = s.message();
          all = false;
          break;
        }
        if (!all) break;
      }
      if (all) {
        durable_ += pending_.size();
        durable_bytes_ += pending_bytes_;
        pending_.clear();
        pending_bytes_ = 0;
        return true;
      }
      // Timed out: keep only the records that are not durable yet.
      (void)CountDurableNow();
      if (pending_.empty()) return true;

      Result<BusInfo> info = bus_.Info();
      if (info.ok() && !info->broker_alive) {
        PrintError(kProduceCmd, fmt::format("no broker is running for bus '{}' (start one with: {} "
                                            "broker); {} not confirmed durable",
                                            global_.bus, RunnelCommand(global_),
                                            Count(pending_.size(), "record")));
        return false;
      }
      if (attempt >= args_.retries) {
        PrintError(
            kProduceCmd,
            fmt::format("{} still not durable after {} {} of {} ms "
                        "({}); raise --timeout-ms or --retries, or check the broker",
                        Count(pending_.size(), "record"), attempt + 1,
                        disk_full && !resent ? "waits for disk space (not resent)" : "attempts",
                        args_.timeout_ms, last_problem.empty() ? "timeout" : last_problem));
        return false;
      }
      // A full disk: the records wait in the ring (the persister never lets
      // producers overwrite what it has not written) and are persisted when
      // space returns; sending them again would only add duplicates.
      if (disk_full) continue;
      // Send them again: the first copies may still become durable later
      // (duplicates), but none is lost.
      resent = true;
      std::vector<PendingRecord> again = std::move(pending_);
      pending_.clear();
      pending_bytes_ = 0;
      for (PendingRecord& p : again) {
        std::optional<std::string_view> key;
        if (p.key) key = *p.key;
        if (!SendOne(key, p.value, p.partition, /*resend=*/true)) return false;
      }
    }
  }

  const GlobalOptions& global_;
  const ProduceArgs& args_;
  Bus& bus_;
  Producer& producer_;
  const bool at_least_once_;
  const std::vector<Header> headers_;
  const uint64_t max_record_bytes_;  // the topic's: key + headers + value
  const std::chrono::nanoseconds timeout_;
  uint32_t full_waits_ = 0;  // waits of --timeout-ms for ring space, last record

  std::vector<PendingRecord> pending_;
  uint64_t pending_bytes_ = 0;
  uint64_t line_number_ = 0;
  uint64_t accepted_ = 0;       // records sent (first copies)
  uint64_t durable_ = 0;        // at-least-once: records confirmed durable
  uint64_t durable_bytes_ = 0;  // and their key + value bytes
  uint64_t resent_ = 0;
  bool record_rejected_ = false;  // the last send failed for the record itself
  uint64_t bytes_ = 0;
};

int RunProduce(const GlobalOptions& global, const ProduceArgs& args) {
  std::vector<Header> headers;
  for (const std::string& h : args.headers) {
    const std::size_t eq = h.find('=');
    if (eq == std::string::npos || eq == 0) {
      PrintError(kProduceCmd, fmt::format("--header '{}' is not NAME=VALUE", h));
      return kExitUsage;
    }
    headers.push_back(
        Header{std::string_view(h).substr(0, eq), std::string_view(h).substr(eq + 1)});
  }
  // Checked here, not per line: the headers come from the command line, and
  // a record with them could never be sent.
  if (const int64_t n = EncodedHeadersLength(headers); n < 0 || n > kMaxHeadersLength) {
    PrintError(kProduceCmd,
               fmt::format("--header: a name or value over {} bytes, or over {} bytes in all "
                           "once encoded ({} headers given)",
                           kMaxHeadersLength, kMaxHeadersLength, headers.size()));
    return kExitUsage;
  }
  InstallStopHandlers(/*ignore_sigpipe=*/false);
  std::optional<Bus> bus = OpenExistingBus(global, kProduceCmd);
  if (!bus) return kExitRuntime;
  Result<TopicInfo> info = bus->DescribeTopic(args.topic);
  if (!info.ok()) {
    PrintError(kProduceCmd, info.status().code() == StatusCode::kNotFound
                                ? ExplainTopicNotFound(args.topic, global)
                                : info.status().ToString());
    return kExitRuntime;
  }
  if (args.partition && *args.partition >= info->options.partitions) {
    PrintError(
        kProduceCmd,
        fmt::format("topic '{}' has {} partition{} (0..{}); there is no partition {}", args.topic,
                    info->options.partitions, info->options.partitions == 1 ? "" : "s",
                    info->options.partitions - 1, *args.partition));
    return kExitUsage;
  }
  if (const auto n = static_cast<uint64_t>(EncodedHeadersLength(headers));
      n > info->options.max_record_bytes) {
    PrintError(kProduceCmd, fmt::format("--header: the headers alone take {} bytes, over the max "
                                        "record size {} of topic '{}'",
                                        n, info->options.max_record_bytes, args.topic));
    return kExitUsage;
  }
  bool at_least_once = info->options.durable;
  if (!args.delivery.empty()) at_least_once = args.delivery == "at-least-once";
  if (at_least_once && !info->options.durable) {
    PrintError(kProduceCmd,
               fmt::format("topic '{}' is not durable (created with --no-durable): "
                           "at-least-once needs a durable topic; use --delivery at-most-once",
                           args.topic));
    return kExitUsage;  // as a --partition the topic does not have
  }
  ProducerOptions popts;
  if (args.partition) popts.partitions = {*args.partition};
  Result<Producer> producer = bus->CreateProducer(args.topic, popts);
  if (!producer.ok()) {
    PrintError(kProduceCmd, producer.status().code() == StatusCode::kNotFound
                                ? ExplainTopicNotFound(args.topic, global)
                                : producer.status().ToString());
    return kExitRuntime;
  }
  Run run(global, args, *bus, *producer, at_least_once, std::move(headers),
          info->options.max_record_bytes);
  return run.Go();
}

}  // namespace

void RegisterProduce(CLI::App& app, const GlobalOptions& global) {
  CLI::App* sub = app.add_subcommand(
      "produce",
      "Send stdin to a topic, one record per line (the line without its newline is the value, "
      "or KEY<sep>VALUE with --key-separator). Exits 0 only if every record was accepted per "
      "--delivery; prints a summary on stderr.");
  auto a = std::make_shared<ProduceArgs>();
  sub->add_option("TOPIC", a->topic, "Topic to write to")->required()->check(CheckTopicName);
  sub->add_option("--partition,-p", a->partition,
                  "Write every record to this partition (default: by key hash, round-robin "
                  "without a key)")
      ->type_name("P")
      ->transform(Decimal());
  sub->add_option("--key-separator,-k", a->key_separator,
                  "Split each line at the first SEP into key and value (\\t or 'tab' for a tab); "
                  "a line without SEP is sent without a key")
      ->type_name("SEP")
      ->check([](const std::string& s) {
        return s.empty() ? std::string("the key separator must not be empty") : std::string();
      });
  sub->add_option("--delivery", a->delivery,
                  "at-most-once (accepted when in the ring) or at-least-once (accepted when "
                  "durable; retried on timeout, duplicates possible). Default: at-least-once for "
                  "durable topics, at-most-once otherwise")
      ->type_name("MODE")
      ->check(CLI::IsMember({"at-most-once", "at-least-once"}));
  sub->add_option("--timeout-ms", a->timeout_ms,
                  "How long to wait for ring space, and (at-least-once) for durability before "
                  "resending")
      ->capture_default_str()
      ->transform(Decimal())
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  sub->add_option("--retries", a->retries,
                  "at-least-once: how many times to resend records that are not durable in time")
      ->capture_default_str()
      ->transform(Decimal());
  sub->add_option("--header,-H", a->headers, "Add header NAME=VALUE to every record (repeatable)")
      ->type_name("NAME=VALUE");
  SetRunner(sub, [a, &global] { return RunProduce(global, *a); });
}

}  // namespace runnel::cli
