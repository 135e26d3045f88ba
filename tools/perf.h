// `runnel perf`: the throughput-tuning tool (producers and consumers as
// separate processes against a live bus). Owned by the perf work; main.cc
// only calls RegisterPerf.

#ifndef RUNNEL_TOOLS_PERF_H_
#define RUNNEL_TOOLS_PERF_H_

#include <CLI/CLI.hpp>

#include "tools/cli_common.h"

namespace runnel::cli {

// Adds the `perf` subcommand (and whatever it needs) to `app`.
void RegisterPerf(CLI::App& app, const GlobalOptions& global);

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_PERF_H_
