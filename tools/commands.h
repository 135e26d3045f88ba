// The subcommand groups of `runnel`, one .cc each. Each Register* adds its
// subcommands to `app` and their runners (tools/cli_common.h: SetRunner).
// `perf` is declared in tools/perf.h.

#ifndef RUNNEL_TOOLS_COMMANDS_H_
#define RUNNEL_TOOLS_COMMANDS_H_

#include <CLI/CLI.hpp>

#include "tools/cli_common.h"

namespace runnel::cli {

void RegisterBroker(CLI::App& app, const GlobalOptions& global);   // broker.cc
void RegisterTopic(CLI::App& app, const GlobalOptions& global);    // topic.cc
void RegisterProduce(CLI::App& app, const GlobalOptions& global);  // produce.cc
void RegisterConsume(CLI::App& app, const GlobalOptions& global);  // consume.cc
void RegisterReplay(CLI::App& app, const GlobalOptions& global);   // replay.cc
void RegisterInspect(CLI::App& app, const GlobalOptions& global);  // inspect.cc
void RegisterStat(CLI::App& app, const GlobalOptions& global);     // stat.cc
void RegisterBus(CLI::App& app, const GlobalOptions& global);      // bus_cmd.cc

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_COMMANDS_H_
