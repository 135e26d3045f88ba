// Shared pieces of the `runnel` command line: the global options, exit codes,
// how a subcommand hands its work to main, and small text helpers (sizes,
// JSON strings, base64, UTF-8 checks) that several subcommands use.
//
// Adding a subcommand (see tools/perf.cc for the smallest example):
//
//   void RegisterThing(CLI::App& app, const GlobalOptions& global) {
//     CLI::App* sub = app.add_subcommand("thing", "What it does");
//     auto opts = std::make_shared<ThingOptions>();
//     sub->add_option("--count", opts->count, "How many")->check(CLI::PositiveNumber);
//     SetRunner(sub, [opts, &global] { return RunThing(global, *opts); });
//   }
//
// The runner runs after the whole command line parsed (so `global` is final:
// --bus validated, --data-dir made absolute) and its result is the exit code.
// A runner reports errors on stderr in words that say what to do next.

#ifndef RUNNEL_TOOLS_CLI_COMMON_H_
#define RUNNEL_TOOLS_CLI_COMMON_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace runnel::cli {

// Exit codes of every subcommand (README.md, "Exit codes").
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;  // the command could not do its job
inline constexpr int kExitUsage = 2;    // bad command line (CLI11 parse errors included)
inline constexpr int kExitDamage = 3;   // replay (--verify) found damage

struct GlobalOptions {
  std::string bus = "default";  // --bus, env RUNNEL_BUS
  std::string data_dir =
      "./runnel-data";          // --data-dir, env RUNNEL_DATA_DIR; absolute after parsing
  bool data_dir_given = false;  // by --data-dir or RUNNEL_DATA_DIR, not a default
};

// Makes `run` the work of subcommand `sub`: main calls it after parsing and
// exits with its result. The last selected subcommand wins (a group such as
// `topic` registers no runner itself).
void SetRunner(CLI::App* sub, std::function<int()> run);
// The runner of the parsed command line; empty if none was selected.
std::function<int()>& SelectedRunner();

// Prints "runnel <command>: <message>" to stderr.
// SIGINT and SIGTERM ask a long-running command to stop: they set the flag
// StopRequested() reads. No SA_RESTART, so a blocked read (of stdin, say)
// returns EINTR and the command sees the flag. ignore_sigpipe: a closed
// stdout is a write error the command reports, not a silent death.
void InstallStopHandlers(bool ignore_sigpipe);
bool StopRequested();

void PrintError(std::string_view command, std::string_view message);
void PrintWarning(std::string_view command, std::string_view message);

// ---- Sizes ----------------------------------------------------------------

// Parses "4096", "64KiB", "64 MiB", "1GB", "512B": a non-negative integer and
// an optional suffix B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB
// (powers of 1000); suffixes are case-insensitive. Refuses fractions,
// negative numbers, unknown suffixes and values above 2^64-1.
Result<uint64_t> ParseSize(std::string_view text);
// "64 MiB", "1.5 GiB", "512 B": exact binary units when they divide evenly,
// else one decimal.
std::string FormatSize(uint64_t bytes);

// Adds an option that takes a size (ParseSize) and stores it in *out. A bad
// value is a CLI11 validation error (exit 2) that names the option.
CLI::Option* AddSizeOption(CLI::App* app, const std::string& name, uint64_t* out,
                           const std::string& description);
// As above; *out stays nullopt unless the option is given.
CLI::Option* AddSizeOption(CLI::App* app, const std::string& name, std::optional<uint64_t>* out,
                           const std::string& description);

// Parses a decimal uint64 (no sign, no suffix); nullopt otherwise.
std::optional<uint64_t> ParseUint(std::string_view text);
// A CLI11 check: "" if `text` is a whole number >= 0 that fits 64 bits.
std::string CheckUint(const std::string& text);
// For options CLI11 converts to an integer (it reads "010" as octal, "0x10"
// as hex and "-1" as 2^64-1): only decimal digits pass, and leading zeros
// are dropped. Add it with ->transform(), so it runs before other checks.
CLI::Validator Decimal();
// For options CLI11 converts to a double (it reads "nan", "inf", "0x10" and
// "1e3"): only DIGITS[.DIGITS] up to 10^12 pass, leading zeros dropped. Add
// it with ->transform().
CLI::Validator DecimalFraction();
// For options that name a topic: "" if `name` is a valid topic name, else
// why not (a usage error, exit 2).
std::string CheckTopicName(const std::string& name);
// "1 record", "2 records": `noun` in the singular, an 's' added unless n == 1.
std::string Count(uint64_t n, std::string_view noun);

// A persistence thread's error (PartitionInfo::persist_error) in words:
// strerror, but EILSEQ (the broker's mark for a damaged log) as what it is.
std::string PersistErrorText(int32_t err);

// ---- Text encodings ---------------------------------------------------------

// True if `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view s);
// Appends `s` as a JSON string literal (with quotes). REQUIRES: valid UTF-8;
// control characters are escaped.
void AppendJsonString(std::string& out, std::string_view s);
// Appends `"name": "..."` for UTF-8 data, or `"name_b64": "..."` (standard
// base64 with padding) otherwise: the marker consumers of `--format json` key on.
void AppendJsonBytesField(std::string& out, std::string_view name, std::string_view bytes);
// Standard base64 (RFC 4648, with '=' padding).
std::string Base64Encode(std::string_view bytes);
// Decodes standard base64; nullopt for malformed input.
std::optional<std::string> Base64Decode(std::string_view text);

// A small streaming JSON writer: commas and nesting are tracked, strings
// escaped. Keys are trusted ASCII names.
//
//   JsonWriter w;
//   w.BeginObject().Key("topic").String("orders").Key("offset").Uint(7).EndObject();
//   fmt::print("{}\n", w.str());
class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view utf8);  // REQUIRES: valid UTF-8
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Int(int64_t v);
  JsonWriter& Double(double v);  // finite; non-finite values are written as null
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  template <typename T>
  JsonWriter& OptionalUint(const std::optional<T>& v) {
    return v ? Uint(static_cast<uint64_t>(*v)) : Null();
  }
  // `"key": "..."` for UTF-8 bytes, `"key_b64": "..."` otherwise (see
  // AppendJsonBytesField); the key must not have been written yet.
  JsonWriter& BytesField(std::string_view key, std::string_view bytes);

  const std::string& str() const { return out_; }
  std::string& mutable_str() { return out_; }
  void Clear();

 private:
  void Separate();
  std::string out_;
  std::string first_;  // one char per open container: '1' if nothing written in it yet
  bool after_key_ = false;
};

// Wall-clock nanoseconds as "2024-05-01T12:34:56.789Z" (UTC, milliseconds).
std::string FormatTimestamp(int64_t ns);

// ---- Bus errors with directions -------------------------------------------

// Explains a failed Bus::Open(create_if_missing = false) for `bus`, with what
// to run next.
std::string ExplainBusOpen(const Status& s, std::string_view bus);
// Explains a kNotFound for `topic`: whether its log still exists in the data
// dir, else how to create it (or, when deleting, how to list the topics).
std::string ExplainTopicNotFound(std::string_view topic, const GlobalOptions& global,
                                 bool deleting = false);

// "runnel" or "runnel --bus NAME": the prefix of commands in hints.
std::string RunnelCommand(const GlobalOptions& global);

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_CLI_COMMON_H_
