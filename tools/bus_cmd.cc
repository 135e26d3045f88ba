// `runnel bus info|remove`: the bus itself (its /dev/shm files).

#include <fmt/core.h>

#include <filesystem>
#include <memory>
#include <string>

#include "ipc/bus.h"
#include "tools/bus_util.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace runnel::cli {
namespace {

struct InfoArgs {
  bool json = false;
};

int RunInfo(const GlobalOptions& global, const InfoArgs& args) {
  constexpr std::string_view kCmd = "bus info";
  std::optional<Bus> bus = OpenExistingBus(global, kCmd);
  if (!bus) return kExitRuntime;
  Result<BusInfo> info = bus->Info();
  if (!info.ok()) {
    PrintError(kCmd, info.status().ToString());
    return kExitRuntime;
  }
  if (args.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("bus").String(info->name);
    w.Key("file_mode").String(fmt::format("{:04o}", info->file_mode));
    WriteBrokerJson(w, *info);
    w.Key("topics").Uint(info->topics).Key("clients").Uint(info->clients);
    w.Key("clients_reaped").Uint(info->clients_reaped);
    w.Key("claims_unblocked").Uint(info->claims_unblocked);
    w.Key("data_dir").String(IsValidUtf8(bus->data_dir()) ? bus->data_dir() : "?");
    if (info->broker_data_dir.empty()) {
      w.Key("broker_data_dir").Null();
    } else {
      w.Key("broker_data_dir")
          .String(IsValidUtf8(info->broker_data_dir) ? info->broker_data_dir : "?");
    }
    w.EndObject();
    fmt::print("{}\n", w.str());
    return kExitOk;
  }
  fmt::print("bus '{}': files /dev/shm/runnel.{}.*, mode {:04o}\n", info->name, info->name,
             info->file_mode);
  fmt::print("  broker: {}, epoch {}\n", DescribeBroker(*info, global), info->broker_epoch);
  fmt::print("  topics {}, clients {} (reaped {}), claims unblocked {}\n", info->topics,
             info->clients, info->clients_reaped, info->claims_unblocked);
  fmt::print("  data dir: {}{}\n", bus->data_dir(),
             info->broker_data_dir.empty() ? " (no broker has recorded one)"
             : info->broker_data_dir == bus->data_dir()
                 ? " (the broker's)"
                 : fmt::format(" (the broker's: {})", info->broker_data_dir));
  return kExitOk;
}

struct RemoveArgs {
  bool force = false;
};

int RunRemove(const GlobalOptions& global, const RemoveArgs& args) {
  constexpr std::string_view kCmd = "bus remove";
  if (!args.force) {
    BusOptions options;
    options.create_if_missing = false;
    Result<Bus> bus = Bus::Open(global.bus, options);
    if (bus.ok()) {
      Result<BusInfo> info = bus->Info();
      if (info.ok() && info->broker_alive) {
        PrintError(kCmd, fmt::format("a broker (pid {}) is running on bus '{}': stop it first "
                                     "(kill -TERM {}), or use --force",
                                     info->broker_pid, global.bus, info->broker_pid));
        return kExitRuntime;
      }
      // Live clients, and records no broker wrote to disk (removing the bus
      // drops them, and a later broker gives their offsets out again).
      uint32_t alive = 0, dead = 0;
      std::string unwritten;
      uint64_t unwritten_records = 0;
      if (Result<std::vector<TopicInfo>> topics = bus->ListTopics(); topics.ok()) {
        for (const TopicInfo& listed : *topics) {
          Result<TopicInfo> t = bus->DescribeTopic(listed.name);
          if (!t.ok()) continue;
          for (const auto* clients : {&t->producers, &t->consumers}) {
            for (const ClientInfo& c : *clients) ++(c.alive ? alive : dead);
          }
          if (!t->options.durable) continue;
          for (const PartitionInfo& p : t->partitions) {
            // No persistence slot: no broker has seen the ring; what it
            // still holds is all unwritten.
            const uint64_t from = p.written_offset ? *p.written_offset : p.earliest_offset;
            if (from >= p.next_offset) continue;
            unwritten_records += p.next_offset - from;
            unwritten += fmt::format(
                "{}  {}/{}: {} (offsets {}..{}){}", unwritten.empty() ? "" : "\n", t->name,
                p.partition, Count(p.next_offset - from, "record"), from, p.next_offset - 1,
                p.persist_error != 0 ? fmt::format(" ({})", PersistErrorText(p.persist_error))
                                     : std::string());
          }
        }
      }
      // Registrations no topic listed (a deleted topic's, one that could not
      // be described): they may be alive, so they count.
      if (info.ok() && info->clients > alive + dead) alive = info->clients - dead;
      if (alive > 0) {
        PrintError(kCmd,
                   fmt::format("bus '{}' has {} live producer{}/consumer{}{}; stop them "
                               "first, or use --force (they keep a private copy)",
                               global.bus, alive, alive == 1 ? "" : "s", alive == 1 ? "" : "s",
                               dead > 0 ? fmt::format(" (and {} dead)", dead) : ""));
        return kExitRuntime;
      }
      if (unwritten_records > 0) {
        PrintError(kCmd, fmt::format("bus '{}' holds {} not written to disk:\n{}\nstart a broker "
                                     "({} broker) to write them first (where an error is named, "
                                     "fix it first), or use --force to drop them (their offsets "
                                     "are then given out again)",
                                     global.bus, Count(unwritten_records, "record"), unwritten,
                                     RunnelCommand(global)));
        return kExitRuntime;
      }
    }
  }
  Status s = Bus::Remove(global.bus);
  if (s.code() == StatusCode::kNotFound) {
    fmt::print("bus '{}' has no files in /dev/shm\n", global.bus);
    return kExitOk;
  }
  if (!s.ok()) {
    PrintError(kCmd, s.ToString());
    return kExitRuntime;
  }
  std::error_code ec;
  if (std::filesystem::exists(global.data_dir, ec)) {
    fmt::print("removed bus '{}' from /dev/shm (the data dir {} is untouched)\n", global.bus,
               global.data_dir);
  } else {
    fmt::print("removed bus '{}' from /dev/shm\n", global.bus);
  }
  return kExitOk;
}

}  // namespace

void RegisterBus(CLI::App& app, const GlobalOptions& global) {
  CLI::App* group = app.add_subcommand("bus",
                                       "The bus itself: its state, and removing its "
                                       "shared memory");
  group->require_subcommand(1);
  {
    CLI::App* sub = group->add_subcommand("info", "Broker, topic and client counts of the bus");
    auto a = std::make_shared<InfoArgs>();
    sub->add_flag("--json", a->json, "One JSON object");
    SetRunner(sub, [a, &global] { return RunInfo(global, *a); });
  }
  {
    CLI::App* sub = group->add_subcommand(
        "remove",
        "Unlink the bus's files in /dev/shm (rings, directory, locks). The data dir stays: a "
        "broker started later re-creates the durable topics from it");
    auto a = std::make_shared<RemoveArgs>();
    sub->add_flag("--force", a->force, "Remove even while a broker or clients are attached");
    SetRunner(sub, [a, &global] { return RunRemove(global, *a); });
  }
}

}  // namespace runnel::cli
