// `runnel`: the command line of the runnel bus. See README.md for every
// command, and docs/cli.md for the output formats and exit codes.

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "ipc/bus.h"
#include "tools/bus_util.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/perf.h"

namespace runnel::cli {
namespace {

// What the parser made of the command words: the deepest (sub)command named
// (e.g. "runnel topic create") and, when a word names no known command or a
// group is missing its command, a message that lists the choices. Walks the
// arguments the way the parser does for our groups: global options with a
// value are skipped, every other token is a command name until a leaf.
struct CommandWords {
  std::string path = "runnel";
  std::string problem;
};

std::string CommandNames(const CLI::App* level) {
  std::string names;
  for (const CLI::App* sub :
       level->get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); })) {
    if (!names.empty()) names += ", ";
    names += sub->get_name();
  }
  return names;
}

CommandWords ParseCommandWords(const CLI::App& app, int argc, char** argv) {
  CommandWords w;
  const CLI::App* level = &app;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("-")) {
      if (arg == "--bus" || arg == "--data-dir") ++i;
      continue;
    }
    std::vector<const CLI::App*> match =
        level->get_subcommands([&](const CLI::App* sub) { return sub->get_name() == arg; });
    if (match.empty()) {
      w.problem = fmt::format("unknown command '{}' for '{}' (commands: {})", arg, w.path,
                              CommandNames(level));
      return w;
    }
    level = match.front();
    w.path += " " + level->get_name();
    if (level->get_subcommands([](const CLI::App*) { return true; }).empty()) return w;  // a leaf
  }
  if (!level->get_subcommands([](const CLI::App*) { return true; }).empty()) {
    w.problem = fmt::format("'{}' needs a command: {}", w.path, CommandNames(level));
  }
  return w;
}

int Main(int argc, char** argv) {
  CLI::App app(
      "runnel: a shared-memory event-streaming bus (topics, partitions, offsets) persisted to "
      "segment files.\nExit codes: 0 ok, 1 runtime error, 2 usage error, 3 replay found damage.",
      "runnel");
  app.set_version_flag("--version", std::string("runnel ") + RUNNEL_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global options are accepted after the subcommand too
  app.footer(
      "Environment: RUNNEL_BUS (--bus), RUNNEL_DATA_DIR (--data-dir).\n"
      "Run `runnel COMMAND --help` for the options of a command.");

  GlobalOptions global;
  app.add_option("--bus", global.bus, "Bus name ([A-Za-z0-9_-], 1..64 characters)")
      ->envname("RUNNEL_BUS")
      ->capture_default_str()
      ->check([](const std::string& name) -> std::string {
        Status s = ValidateBusName(name);
        return s.ok() ? std::string() : s.message();
      });
  CLI::Option* data_dir_option =
      app.add_option("--data-dir", global.data_dir,
                     "Where the broker keeps segment files (DATA_DIR/<topic>/<partition>/); "
                     "default: the one the bus's broker uses, else ./runnel-data")
          ->envname("RUNNEL_DATA_DIR")
          ->check([](const std::string& dir) -> std::string {
            // Empty would be the file system's root to every path built on it.
            return dir.empty() ? "must not be empty (leave --data-dir out for the default)" : "";
          });

  RegisterBroker(app, global);
  RegisterTopic(app, global);
  RegisterProduce(app, global);
  RegisterConsume(app, global);
  RegisterReplay(app, global);
  RegisterInspect(app, global);
  RegisterStat(app, global);
  RegisterBus(app, global);
  RegisterPerf(app, global);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const CommandWords words = ParseCommandWords(app, argc, argv);
    std::string what = e.what();
    // A number that passed the digits check but does not fit the option
    // ("Could not convert: --partition = 4294967296"): say so plainly.
    constexpr std::string_view kConvert = "Could not convert: ";
    if (dynamic_cast<const CLI::ConversionError*>(&e) != nullptr && what.starts_with(kConvert)) {
      const std::string rest = what.substr(kConvert.size());
      const std::size_t eq = rest.find(" = ");
      if (eq != std::string::npos) {
        what = rest.substr(0, eq) + ": " + rest.substr(eq + 3) + " is out of range";
      }
    }
    if (!words.problem.empty()) {
      fmt::print(stderr, "runnel: {}; see: {} --help\n", words.problem, words.path);
    } else {
      fmt::print(stderr, "{}: {}; see: {} --help\n", words.path, what, words.path);
    }
    return kExitUsage;
  }

  global.data_dir_given = data_dir_option->count() > 0;
  if (data_dir_option->count() == 0) {
    // Not given (CLI11 counts RUNNEL_DATA_DIR too): the broker's, so that
    // commands run from any directory read and create where it persists.
    if (std::string recorded = RecordedDataDir(global.bus); !recorded.empty()) {
      global.data_dir = recorded;
    }
  }
  if (!global.data_dir.empty()) {
    // Processes started from other directories must agree on the data dir.
    std::error_code ec;
    std::filesystem::path abs = std::filesystem::absolute(global.data_dir, ec);
    if (!ec) global.data_dir = abs.lexically_normal().string();
    if (global.data_dir.size() > 1 && global.data_dir.back() == '/') global.data_dir.pop_back();
  }
  std::function<int()>& runner = SelectedRunner();
  if (!runner) {
    fmt::print(stderr, "{}", app.help());
    return kExitUsage;
  }
  return runner();
}

}  // namespace
}  // namespace runnel::cli

int main(int argc, char** argv) {
  try {
    return runnel::cli::Main(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "runnel: internal error: {}\n", e.what());
    return runnel::cli::kExitRuntime;
  }
}
