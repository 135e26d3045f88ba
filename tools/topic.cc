// `runnel topic create|list|describe|delete`.

#include <fmt/core.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "ipc/bus.h"
#include "ipc/durability.h"
#include "persistence/persister.h"
#include "persistence/reader.h"
#include "tools/bus_util.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace runnel::cli {
namespace {

// ---- create -------------------------------------------------------------------

struct CreateArgs {
  std::string name;
  uint32_t partitions = 1;
  std::optional<uint64_t> ring_size;
  std::optional<uint64_t> segment_size;
  uint64_t retention_bytes = 0;
  std::string retention_ms = "0";  // decimal (checked); a string: CLI11 reads 010 as octal
  std::optional<uint64_t> max_record_size;
  std::string fsync;
  bool single_producer = false;
  bool no_durable = false;
};

// The settings that differ between `have` and `want`, in command-line terms.
std::string Differences(const TopicOptions& have, const TopicOptions& want) {
  std::vector<std::string> diffs;
  auto add = [&](std::string_view option, const std::string& h, const std::string& w) {
    if (h != w) diffs.push_back(fmt::format("{} {} (the topic has {})", option, w, h));
  };
  add("--partitions", std::to_string(have.partitions), std::to_string(want.partitions));
  add("--ring-size", FormatSize(have.ring_bytes), FormatSize(want.ring_bytes));
  if (want.max_record_bytes != 0) {
    add("--max-record-size", FormatSize(have.max_record_bytes), FormatSize(want.max_record_bytes));
  }
  if (have.durable && want.durable) {  // a memory-only topic's log settings mean nothing
    add("--segment-size", FormatSize(have.segment_bytes), FormatSize(want.segment_bytes));
    add("--retention-bytes", std::to_string(have.retention_bytes),
        std::to_string(want.retention_bytes));
    add("--retention-ms", std::to_string(have.retention_ms), std::to_string(want.retention_ms));
    add("--fsync", FsyncString(have), FsyncString(want));
  }
  add("--single-producer", have.single_producer ? "on" : "off",
      want.single_producer ? "on" : "off");
  add("--no-durable", have.durable ? "off" : "on", want.durable ? "off" : "on");
  std::string out;
  for (const std::string& d : diffs) {
    if (!out.empty()) out += ", ";
    out += d;
  }
  return out;
}

std::string SettingsSummary(const TopicOptions& o) {
  std::string retention;
  if (o.retention_bytes == 0 && o.retention_ms == 0) {
    retention = "unlimited";
  } else {
    if (o.retention_bytes != 0) retention += FormatSize(o.retention_bytes);
    if (o.retention_ms != 0) {
      if (!retention.empty()) retention += " / ";
      retention += fmt::format("{} ms", o.retention_ms);
    }
  }
  return fmt::format("{} partition{}, ring {}, max record {}, {}{}", o.partitions,
                     o.partitions == 1 ? "" : "s", FormatSize(o.ring_bytes),
                     FormatSize(o.max_record_bytes),
                     o.durable ? fmt::format("durable (segments {}, retention {}, fsync {})",
                                             FormatSize(o.segment_bytes), retention, FsyncString(o))
                               : std::string("not durable (memory only)"),
                     o.single_producer ? ", single producer" : "");
}

// Every partition's first segment is preallocated whole: a data dir with
// less room than that fills up (ENOSPC) with most of its space free.
void WarnIfNoRoomForSegments(const std::string& data_dir, const TopicOptions& topic) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path at = data_dir;
  while (!at.empty() && at != at.root_path() && !fs::exists(at, ec)) at = at.parent_path();
  const fs::space_info space = fs::space(at.empty() ? fs::path(".") : at, ec);
  const uint64_t needed = uint64_t{topic.partitions} * topic.segment_bytes;
  if (ec || space.available >= needed) return;
  PrintWarning("topic create",
               fmt::format("{} has {} free, and its {} partition{} take {} each at once "
                           "for their first segment: the broker will fail to write "
                           "(no space left on device); use a smaller --segment-size",
                           data_dir, FormatSize(space.available), topic.partitions,
                           topic.partitions == 1 ? "" : "s", FormatSize(topic.segment_bytes)));
}

int RunCreate(const GlobalOptions& global, const CreateArgs& args) {
  constexpr std::string_view kCmd = "topic create";
  if (Status s = ValidateTopicName(args.name); !s.ok()) {
    PrintError(kCmd, s.message());
    return kExitUsage;
  }
  TopicOptions o;
  o.partitions = args.partitions;
  if (args.ring_size) o.ring_bytes = *args.ring_size;
  if (args.segment_size) o.segment_bytes = *args.segment_size;
  o.retention_bytes = args.retention_bytes;
  o.retention_ms = *ParseUint(args.retention_ms);
  if (args.max_record_size) {
    if (*args.max_record_size > UINT32_MAX) {
      PrintError(kCmd, "--max-record-size must be below 4 GiB");
      return kExitUsage;
    }
    o.max_record_bytes = static_cast<uint32_t>(*args.max_record_size);
  }
  if (!args.fsync.empty()) {
    if (Status s = ApplyFsync(args.fsync, o); !s.ok()) {
      PrintError(kCmd, s.message());
      return kExitUsage;
    }
  }
  o.single_producer = args.single_producer;
  o.durable = !args.no_durable;

  Result<Bus> bus = OpenBus(global, /*create_if_missing=*/true);
  if (!bus.ok()) {
    PrintError(kCmd, ExplainBusOpen(bus.status(), global.bus));
    return kExitRuntime;
  }
  Result<TopicInfo> before = bus->DescribeTopic(args.name);
  Status s = bus->CreateTopic(args.name, o);
  if (!s.ok()) {
    if (s.code() == StatusCode::kAlreadyExists && !before.ok()) {
      // Not on the bus: its log in the data dir has other settings.
      Result<TopicOptions> meta = ReadTopicMeta(bus->data_dir(), args.name);
      const std::string diff = meta.ok() ? Differences(*meta, o) : std::string();
      if (diff.empty()) {
        PrintError(kCmd, s.message());  // says it all, in the library's words
      } else {
        PrintError(kCmd,
                   fmt::format("topic '{}' is in the data dir {} with other settings: {}; "
                               "create it with the same settings (a broker restores it with "
                               "them by itself), or delete it first with: {} topic delete {}",
                               args.name, bus->data_dir(), diff, RunnelCommand(global), args.name));
      }
    } else if (s.code() == StatusCode::kAlreadyExists) {
      std::string diff = before.ok() ? Differences(before->options, o) : std::string();
      PrintError(kCmd, fmt::format("topic '{}' already exists on bus '{}' with other settings: {}; "
                                   "create it with the same settings, or delete it first with: "
                                   "{} topic delete {}",
                                   args.name, global.bus, diff.empty() ? s.message() : diff,
                                   RunnelCommand(global), args.name));
    } else if (s.code() == StatusCode::kInvalidArgument) {
      PrintError(kCmd, s.message());
      return kExitUsage;
    } else {
      PrintError(kCmd, s.ToString());
    }
    return kExitRuntime;
  }
  Result<TopicInfo> after = bus->DescribeTopic(args.name);
  if (!after.ok() && after.status().code() != StatusCode::kNotFound) {
    // It exists but cannot be used (a ring file removed by hand): not "created".
    PrintError(kCmd, after.status().ToString());
    return kExitRuntime;
  }
  const TopicOptions& shown = after.ok() ? after->options : o;
  if (before.ok()) {
    fmt::print("topic '{}' already exists on bus '{}' with these settings: {}\n", args.name,
               global.bus, SettingsSummary(shown));
  } else {
    fmt::print("created topic '{}' on bus '{}': {}\n", args.name, global.bus,
               SettingsSummary(shown));
    if (shown.durable) WarnIfNoRoomForSegments(bus->data_dir(), shown);
  }
  return kExitOk;
}

// ---- list ---------------------------------------------------------------------

struct ListArgs {
  bool json = false;
};

int RunList(const GlobalOptions& global, const ListArgs& args) {
  constexpr std::string_view kCmd = "topic list";
  std::optional<Bus> bus = OpenExistingBus(global, kCmd);
  if (!bus) return kExitRuntime;
  Result<std::vector<TopicInfo>> topics = bus->ListTopics();
  if (!topics.ok()) {
    PrintError(kCmd, topics.status().ToString());
    return kExitRuntime;
  }
  if (args.json) {
    JsonWriter w;
    w.BeginObject().Key("bus").String(global.bus).Key("topics").BeginArray();
    for (const TopicInfo& t : *topics) {
      w.BeginObject();
      WriteTopicSettingsJson(w, t);
      w.EndObject();
    }
    w.EndArray().EndObject();
    fmt::print("{}\n", w.str());
    return kExitOk;
  }
  if (topics->empty()) {
    fmt::print("no topics on bus '{}' (create one with: {} topic create NAME)\n", global.bus,
               RunnelCommand(global));
    return kExitOk;
  }
  fmt::print("{:<24} {:>10} {:>10} {:>11} {:>8} {:>12} {}\n", "TOPIC", "PARTITIONS", "RING",
             "MAX_RECORD", "DURABLE", "FSYNC", "SEGMENT");
  for (const TopicInfo& t : *topics) {
    const TopicOptions& o = t.options;
    fmt::print("{:<24} {:>10} {:>10} {:>11} {:>8} {:>12} {}\n", t.name, o.partitions,
               FormatSize(o.ring_bytes), FormatSize(o.max_record_bytes), o.durable ? "yes" : "no",
               o.durable ? FsyncString(o) : "-", o.durable ? FormatSize(o.segment_bytes) : "-");
  }
  return kExitOk;
}

// ---- describe -----------------------------------------------------------------

struct DescribeArgs {
  std::string name;
  bool json = false;
};

std::string OptionalNumber(const std::optional<uint64_t>& v) {
  return v ? std::to_string(*v) : std::string("-");
}

int RunDescribe(const GlobalOptions& global, const DescribeArgs& args) {
  constexpr std::string_view kCmd = "topic describe";
  std::optional<Bus> bus = OpenExistingBus(global, kCmd);
  if (!bus) return kExitRuntime;
  Result<TopicInfo> t = bus->DescribeTopic(args.name);
  if (!t.ok()) {
    PrintError(kCmd, t.status().code() == StatusCode::kNotFound
                         ? ExplainTopicNotFound(args.name, global)
                         : t.status().ToString());
    return kExitRuntime;
  }
  if (args.json) {
    JsonWriter w;
    w.BeginObject().Key("bus").String(global.bus);
    WriteTopicSettingsJson(w, *t);
    w.Key("partition_info").BeginArray();
    for (const PartitionInfo& p : t->partitions) {
      w.BeginObject();
      w.Key("partition").Uint(p.partition);
      w.Key("next_offset").Uint(p.next_offset);
      w.Key("earliest_ring_offset").Uint(p.earliest_offset);
      w.Key("tail_position").Uint(p.tail_position);
      w.Key("earliest_position").Uint(p.earliest_position);
      w.Key("written_offset").OptionalUint(p.written_offset);
      w.Key("durable_offset").OptionalUint(p.durable_offset);
      w.Key("persist_error").Int(p.persist_error);
      w.Key("unblocked_claims").Uint(p.unblocked_claims);
      w.Key("unblocked_bytes").Uint(p.unblocked_bytes);
      w.Key("aborted_claims").Uint(p.aborted_claims);
      w.Key("disk_bytes")
          .OptionalUint(DiskUsage(PartitionDir(global.data_dir, t->name, p.partition)));
      w.EndObject();
    }
    w.EndArray();
    for (const auto* clients : {&t->producers, &t->consumers}) {
      w.Key(clients == &t->producers ? "producers" : "consumers").BeginArray();
      for (const ClientInfo& c : *clients) {
        w.BeginObject();
        w.Key("id").Uint(c.id).Key("pid").Int(c.pid).Key("alive").Bool(c.alive);
        w.Key("idle_ms").Int(c.idle_ms);
        if (c.kind == ClientKind::kConsumer) w.Key("group").String(c.group);
        w.Key("partitions").BeginArray();
        for (const ClientPartition& cp : c.partitions) {
          w.BeginObject().Key("partition").Uint(cp.partition).Key("position").Uint(cp.position);
          if (c.kind == ClientKind::kConsumer) w.Key("lag").Uint(cp.lag);
          w.EndObject();
        }
        w.EndArray().EndObject();
      }
      w.EndArray();
    }
    w.EndObject();
    fmt::print("{}\n", w.str());
    return kExitOk;
  }

  fmt::print("topic '{}' on bus '{}' (generation {}, created {})\n", t->name, global.bus,
             t->generation, FormatTimestamp(t->created_wall_ns));
  fmt::print("  {}\n", SettingsSummary(t->options));
  if (t->options.durable) {
    fmt::print("  log: {}/{}/<partition>/\n", global.data_dir, t->name);
  } else {
    fmt::print("  log: none (memory only)\n");
  }
  fmt::print("\n{:>9} {:>12} {:>14} {:>12} {:>12} {:>6} {:>10} {:>10}\n", "PARTITION",
             "NEXT_OFFSET", "RING_EARLIEST", "WRITTEN", "DURABLE", "ERROR", "UNBLOCKED", "DISK");
  for (const PartitionInfo& p : t->partitions) {
    std::optional<uint64_t> disk = DiskUsage(PartitionDir(global.data_dir, t->name, p.partition));
    const int32_t err = p.persist_error;
    fmt::print("{:>9} {:>12} {:>14} {:>12} {:>12} {:>6} {:>10} {:>10}\n", p.partition,
               p.next_offset, p.earliest_offset, OptionalNumber(p.written_offset),
               OptionalNumber(p.durable_offset), err == 0 ? std::string("-") : std::to_string(err),
               p.unblocked_claims, disk ? FormatSize(*disk) : std::string("-"));
    if (err != 0) fmt::print("          persist error: {}\n", PersistErrorText(err));
  }
  auto print_clients = [](std::string_view title, const std::vector<ClientInfo>& clients) {
    fmt::print("\n{} ({})\n", title, clients.size());
    for (const ClientInfo& c : clients) {
      std::string parts;
      for (const ClientPartition& cp : c.partitions) {
        if (!parts.empty()) parts += ' ';
        if (c.kind == ClientKind::kConsumer) {
          parts += fmt::format("p{}@{} lag {}", cp.partition, cp.position, cp.lag);
        } else {
          parts += fmt::format("p{}@{}", cp.partition, cp.position);
        }
      }
      fmt::print("  id {} pid {}{} idle {} ms: {}\n", c.id, c.pid, c.alive ? "" : " (dead)",
                 c.idle_ms, parts.empty() ? "-" : parts);
    }
  };
  print_clients("producers", t->producers);
  print_clients("consumers", t->consumers);
  return kExitOk;
}

// ---- delete -------------------------------------------------------------------

struct DeleteArgs {
  std::string name;
  bool purge = false;
  int64_t purge_wait_ms = 10'000;
};

int RunDelete(const GlobalOptions& global, const DeleteArgs& args) {
  constexpr std::string_view kCmd = "topic delete";
  const std::string log_dir = (std::filesystem::path(global.data_dir) / args.name).string();
  // A topic with a log may be only in the data dir, also when the bus lost
  // its shared memory altogether (a reboot): the bus is then created, as a
  // broker would, so that the delete is recorded for that broker. Only with
  // the data dir named: a mistyped --bus must not create a bus and tombstone
  // a topic in ./runnel-data.
  std::error_code exists_ec;
  const bool log_here = ValidateTopicName(args.name).ok() &&
                        std::filesystem::exists(log_dir + "/topic.meta", exists_ec);
  Result<Bus> bus = OpenBus(global, /*create_if_missing=*/log_here && global.data_dir_given);
  if (!bus.ok()) {
    PrintError(kCmd, bus.status().code() == StatusCode::kNotFound && log_here
                         ? fmt::format("bus '{}' does not exist; topic '{}' has a log in {}: to "
                                       "delete it there, name that data dir: {} topic delete {} "
                                       "--data-dir {}",
                                       global.bus, args.name, global.data_dir,
                                       RunnelCommand(global), args.name, global.data_dir)
                         : ExplainBusOpen(bus.status(), global.bus));
    return kExitRuntime;
  }
  NoteOtherDataDir(kCmd, global, *bus);
  // With the bus's data dir, DeleteTopic first marks the log as deleted (a
  // tombstone): no broker restores the topic from it afterwards.
  Status s = bus->DeleteTopic(args.name);
  bool was_on_bus = s.ok();
  std::error_code ec;
  // What follows on disk holds the topic's lock (TopicDirLock) and acts only
  // while the topic is not on the bus: a broker restoring it or a client
  // creating it again comes either first (then it is deleted from the bus
  // after all) or after (and finds the tombstone, or no log).
  std::optional<TopicDirLock> lock;
  auto lock_off_bus = [&] {
    lock.emplace(global.data_dir, args.name);
    if (bus->DescribeTopic(args.name).status().code() == StatusCode::kNotFound) return true;
    lock.reset();
    return false;
  };
  // (No log, nothing to do on disk: no lock, whose file would stay for the name.)
  if (s.code() == StatusCode::kNotFound && ValidateTopicName(args.name).ok() &&
      std::filesystem::is_directory(log_dir, ec) && !lock_off_bus()) {
    s = bus->DeleteTopic(args.name);
    was_on_bus = s.ok();
  }
  if (s.code() == StatusCode::kNotFound && lock &&
      std::filesystem::exists(log_dir + "/topic.meta", ec) &&
      !ReadTopicTombstone(global.data_dir, args.name)) {
    // Only in the data dir (the bus lost its shared memory and no broker
    // restored it yet): a broker would bring it back, so mark it deleted.
    s = WriteTopicTombstone(global.data_dir, args.name, {});
    if (s.ok()) {
      fmt::print("topic '{}' is not on bus '{}'; marked its log {} as deleted\n", args.name,
                 global.bus, log_dir);
    }
  }
  if (!s.ok() && !(s.code() == StatusCode::kNotFound && args.purge)) {
    PrintError(kCmd, s.code() == StatusCode::kNotFound
                         ? ExplainTopicNotFound(args.name, global, /*deleting=*/true)
                         : s.ToString());
    return kExitRuntime;
  }
  const bool has_log = std::filesystem::is_directory(log_dir, ec);
  if (was_on_bus) fmt::print("deleted topic '{}' from bus '{}'\n", args.name, global.bus);
  Result<BusInfo> info = bus->Info();
  const bool broker_alive = info.ok() && info->broker_alive;
  if (!args.purge) {
    if (has_log && broker_alive) {
      fmt::print("the broker removes its log {}\n", log_dir);
    } else if (has_log) {
      fmt::print(
          "its log stays in {}, marked as deleted: the next broker removes it (no broker is "
          "running; remove it now with: {} topic delete {} --purge)\n",
          log_dir, RunnelCommand(global), args.name);
    }
    return kExitOk;
  }
  if (!has_log) {
    if (!was_on_bus) {
      PrintError(kCmd, ExplainTopicNotFound(args.name, global, /*deleting=*/true));
      return kExitRuntime;
    }
    return kExitOk;
  }
  if (!lock && !lock_off_bus()) {
    fmt::print("topic '{}' was created again meanwhile; its new log {} stays\n", args.name,
               log_dir);
    return kExitOk;
  }
  // A running broker closes the topic's logs on its next tick (and removes
  // them itself); wait for that.
  Status purged =
      PurgeTopicData(global.data_dir, args.name, std::chrono::milliseconds(args.purge_wait_ms));
  if (!purged.ok()) {
    PrintError(kCmd, fmt::format("{} (is the topic still in use on another bus with this data "
                                 "dir?)",
                                 purged.message()));
    return kExitRuntime;
  }
  fmt::print("deleted its log {}\n", log_dir);
  return kExitOk;
}

}  // namespace

void RegisterTopic(CLI::App& app, const GlobalOptions& global) {
  CLI::App* topic = app.add_subcommand("topic", "Create, list, describe and delete topics");
  topic->require_subcommand(1);

  {
    CLI::App* sub = topic->add_subcommand(
        "create",
        "Create a topic (idempotent: an existing topic with the same settings is OK; other "
        "settings are an error that names them)");
    auto a = std::make_shared<CreateArgs>();
    sub->add_option("NAME", a->name, "Topic name ([A-Za-z0-9._-], 1..64 characters)")
        ->required()
        ->check(CheckTopicName);
    sub->add_option("--partitions", a->partitions, "Number of partitions (1..64)")
        ->capture_default_str()
        ->transform(Decimal())
        ->check(CLI::Range(1, 64));
    AddSizeOption(sub, "--ring-size", &a->ring_size,
                  "Shared-memory ring per partition: a power of two, 64KiB..1GiB (default 1MiB)");
    CLI::Option* segment_size =
        AddSizeOption(sub, "--segment-size", &a->segment_size,
                      "Segment file size on disk before it rolls (default 64MiB)");
    CLI::Option* retention_bytes = AddSizeOption(
        sub, "--retention-bytes", &a->retention_bytes,
        "Delete old segments beyond this total size per partition (default: unlimited)");
    CLI::Option* retention_ms =
        sub->add_option(
               "--retention-ms", a->retention_ms,
               "Delete segments whose newest record is older than this (default: unlimited)")
            ->type_name("MS")
            ->check([](const std::string& text) -> std::string {
              const std::optional<uint64_t> ms = ParseUint(text);
              if (ms && *ms <= kMaxRetentionMs) return {};
              return "must be a whole number of milliseconds from 0 to " +
                     std::to_string(kMaxRetentionMs) + " (got " + text + ")";
            });
    AddSizeOption(sub, "--max-record-size", &a->max_record_size,
                  "Largest key + headers + value (default: ring size / 4 minus overhead)");
    CLI::Option* fsync =
        sub->add_option(
               "--fsync", a->fsync,
               "When the log is synced: never | interval:MS | always (default interval:10)")
            ->type_name("POLICY")
            ->check([](const std::string& text) -> std::string {
              Result<SyncPolicy> p = SyncPolicy::Parse(text);
              return p.ok() ? std::string() : p.status().message();
            });
    sub->add_flag("--single-producer", a->single_producer,
                  "At most one producer per partition (SPSC ring: cheaper claims)");
    // A memory-only topic has no log to size, keep or sync: such options
    // with it are a mistake (they were stored, and a later create without
    // them was refused as "other settings").
    sub->add_flag("--no-durable", a->no_durable,
                  "Keep the topic in memory only: no segment files, no replay")
        ->excludes(segment_size)
        ->excludes(retention_bytes)
        ->excludes(retention_ms)
        ->excludes(fsync);
    SetRunner(sub, [a, &global] { return RunCreate(global, *a); });
  }
  {
    CLI::App* sub = topic->add_subcommand("list", "List the topics of the bus with their settings");
    auto a = std::make_shared<ListArgs>();
    sub->add_flag("--json", a->json, "One JSON object: {\"bus\":..., \"topics\":[...]}");
    SetRunner(sub, [a, &global] { return RunList(global, *a); });
  }
  {
    CLI::App* sub = topic->add_subcommand(
        "describe", "Show a topic's settings, partitions (offsets, durability) and clients");
    auto a = std::make_shared<DescribeArgs>();
    sub->add_option("NAME", a->name, "Topic name")->required()->check(CheckTopicName);
    sub->add_flag("--json", a->json, "One JSON object");
    SetRunner(sub, [a, &global] { return RunDescribe(global, *a); });
  }
  {
    CLI::App* sub = topic->add_subcommand(
        "delete",
        "Delete a topic: its rings and client registrations, and (by the broker, or now with "
        "--purge) its log in the data dir");
    auto a = std::make_shared<DeleteArgs>();
    sub->add_option("NAME", a->name, "Topic name")->required()->check(CheckTopicName);
    sub->add_flag("--purge", a->purge,
                  "Also delete the log DATA_DIR/NAME now, even with no broker running (a running "
                  "broker deletes it itself; else the next broker to start does)");
    SetRunner(sub, [a, &global] { return RunDelete(global, *a); });
  }
}

}  // namespace runnel::cli
