#include "tools/cli_common.h"

#include <fmt/core.h>

#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iterator>
#include <system_error>

#include "ipc/bus.h"
#include "ipc/durability.h"

namespace runnel::cli {

namespace {
// Lock-free, so safe to set in a signal handler; relaxed: a lone flag that
// publishes no data.
std::atomic<bool> g_stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free);
void OnStopSignal(int) { g_stop_requested.store(true, std::memory_order_relaxed); }
}  // namespace

void InstallStopHandlers(bool ignore_sigpipe) {
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  (void)sigaction(SIGINT, &sa, nullptr);
  (void)sigaction(SIGTERM, &sa, nullptr);
  if (ignore_sigpipe) (void)std::signal(SIGPIPE, SIG_IGN);
}

bool StopRequested() { return g_stop_requested.load(std::memory_order_relaxed); }

std::function<int()>& SelectedRunner() {
  static std::function<int()> runner;
  return runner;
}

void SetRunner(CLI::App* sub, std::function<int()> run) {
  sub->callback([run = std::move(run)] { SelectedRunner() = run; });
}

void PrintError(std::string_view command, std::string_view message) {
  fmt::print(stderr, "runnel {}: {}\n", command, message);
}

void PrintWarning(std::string_view command, std::string_view message) {
  fmt::print(stderr, "runnel {}: warning: {}\n", command, message);
}

std::optional<uint64_t> ParseUint(std::string_view text) {
  if (text.empty() || text.front() == '+' || text.front() == '-') return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

std::string CheckUint(const std::string& text) {
  if (ParseUint(text)) return {};
  const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  if (digits) return "is too large (got " + text + ")";
  if (!text.empty() && text[0] == '-') return "must not be negative (got " + text + ")";
  return "must be a whole number (got " + text + ")";
}

std::string CheckTopicName(const std::string& name) {
  Status s = ValidateTopicName(name);
  return s.ok() ? std::string() : s.message();
}

std::string PersistErrorText(int32_t err) {
  if (err == ENOENT) return "its log directory was removed while the broker wrote to it";
  if (err == EILSEQ) {
    return "damaged log, offsets clashing with it, or a record written over in shared memory: "
           "see the broker's output";
  }
  return std::strerror(err);
}

std::string Count(uint64_t n, std::string_view noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

CLI::Validator Decimal() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (std::string problem = CheckUint(text); !problem.empty()) return problem;
        const std::size_t first = text.find_first_not_of('0');
        text = first == std::string::npos ? "0" : text.substr(first);
        return {};
      },
      "", "DECIMAL");
}

CLI::Validator DecimalFraction() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const std::size_t dot = text.find('.');
        const std::string whole = text.substr(0, dot);
        const std::string fraction = dot == std::string::npos ? "" : text.substr(dot + 1);
        const auto digits = [](const std::string& s) {
          return s.find_first_not_of("0123456789") == std::string::npos;
        };
        if (whole.empty() || !digits(whole) || !digits(fraction) ||
            (dot != std::string::npos && fraction.empty())) {
          if (!text.empty() && text[0] == '-') return "must not be negative (got " + text + ")";
          return "must be a decimal number such as 2 or 0.5 (got " + text + ")";
        }
        const std::size_t first = whole.find_first_not_of('0');
        const std::string trimmed = first == std::string::npos ? "0" : whole.substr(first);
        if (trimmed.size() > 13 || (trimmed.size() == 13 && trimmed != "1000000000000") ||
            (trimmed == "1000000000000" && fraction.find_first_not_of('0') != std::string::npos)) {
          return "must be at most 1000000000000 (got " + text + ")";
        }
        text = trimmed + (fraction.empty() ? "" : "." + fraction);
        return {};
      },
      "", "DECIMAL");
}

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  const std::string shown(text);
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) {
    return Status::InvalidArgument("'" + shown +
                                   "' is not a size: expected a whole number of bytes with an "
                                   "optional suffix, e.g. 4096, 64KiB, 1MiB, 2GiB, 10MB");
  }
  std::optional<uint64_t> number = ParseUint(text.substr(0, digits));
  if (!number) return Status::InvalidArgument("size '" + shown + "' is too large");
  std::string_view suffix = text.substr(digits);
  while (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
  struct Unit {
    std::string_view name;
    uint64_t factor;
  };
  static constexpr std::array<Unit, 10> kUnits = {{
      {"", 1},
      {"B", 1},
      {"KiB", uint64_t{1} << 10},
      {"MiB", uint64_t{1} << 20},
      {"GiB", uint64_t{1} << 30},
      {"TiB", uint64_t{1} << 40},
      {"KB", 1000},
      {"MB", 1000 * 1000},
      {"GB", 1000 * 1000 * 1000},
      {"TB", uint64_t{1000} * 1000 * 1000 * 1000},
  }};
  for (const Unit& u : kUnits) {
    if (!EqualsIgnoreCase(suffix, u.name)) continue;
    if (*number > UINT64_MAX / u.factor) {
      return Status::InvalidArgument("size '" + shown + "' is too large");
    }
    return *number * u.factor;
  }
  return Status::InvalidArgument("size '" + shown + "' has an unknown suffix '" +
                                 std::string(suffix) +
                                 "': use B, KiB, MiB, GiB, TiB (1024-based) or KB, MB, GB, TB "
                                 "(1000-based), e.g. 64MiB");
}

std::string FormatSize(uint64_t bytes) {
  static constexpr std::array<std::string_view, 5> kNames = {"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t unit = 0;
  uint64_t whole = bytes;
  while (unit + 1 < kNames.size() && whole >= 1024 && whole % 1024 == 0) {
    whole /= 1024;
    ++unit;
  }
  if (whole < 1024 || unit + 1 == kNames.size()) return fmt::format("{} {}", whole, kNames[unit]);
  double v = static_cast<double>(bytes);
  unit = 0;
  while (unit + 1 < kNames.size() && v >= 1024.0) {
    v /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", v, kNames[unit]);
}

namespace {

// Registers a size option (suffixes allowed) that stores into *out.
template <typename Out>
CLI::Option* AddSizeOptionTo(CLI::App* app, const std::string& name, Out* out,
                             const std::string& description) {
  return app
      ->add_option_function<std::string>(
          name,
          [out, name](const std::string& text) {
            Result<uint64_t> v = ParseSize(text);
            if (!v.ok()) throw CLI::ValidationError(name, v.status().message());
            *out = *v;
          },
          description)
      ->type_name("BYTES");
}

}  // namespace

CLI::Option* AddSizeOption(CLI::App* app, const std::string& name, uint64_t* out,
                           const std::string& description) {
  return AddSizeOptionTo(app, name, out, description);
}

CLI::Option* AddSizeOption(CLI::App* app, const std::string& name, std::optional<uint64_t>* out,
                           const std::string& description) {
  return AddSizeOptionTo(app, name, out, description);
}

// ---- Text encodings ---------------------------------------------------------

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) {
      return false;  // overlong
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

void AppendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

void AppendJsonBytesField(std::string& out, std::string_view name, std::string_view bytes) {
  out.push_back('"');
  out += name;
  if (IsValidUtf8(bytes)) {
    out += "\":";
    AppendJsonString(out, bytes);
  } else {
    out += "_b64\":\"";
    out += Base64Encode(bytes);
    out.push_back('"');
  }
}

namespace {
constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}  // namespace

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{p[i]} << 16) | (uint32_t{p[i + 1]} << 8) | p[i + 2];
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.push_back(kBase64Alphabet[(v >> 6) & 63]);
    out.push_back(kBase64Alphabet[v & 63]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t{p[i]} << 16;
    if (rest == 2) v |= uint32_t{p[i + 1]} << 8;
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kBase64Alphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && last && k >= 2) {
        ++pad;
        v <<= 6;
        continue;
      }
      if (pad > 0) return std::nullopt;
      const int d = value(c);
      if (d < 0) return std::nullopt;
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out.push_back(static_cast<char>((v >> 16) & 0xFF));
    if (pad < 2) out.push_back(static_cast<char>((v >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(v & 0xFF));
  }
  return out;
}

// ---- JsonWriter ----------------------------------------------------------------

void JsonWriter::Separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (first_.back() == '1') {
      first_.back() = '0';
    } else {
      out_.push_back(',');
    }
  }
}

JsonWriter& JsonWriter::BeginObject() {
  Separate();
  out_.push_back('{');
  first_.push_back('1');
  return *this;
}

JsonWriter& JsonWriter::EndObject() {
  out_.push_back('}');
  first_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::BeginArray() {
  Separate();
  out_.push_back('[');
  first_.push_back('1');
  return *this;
}

JsonWriter& JsonWriter::EndArray() {
  out_.push_back(']');
  first_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::Key(std::string_view key) {
  Separate();
  AppendJsonString(out_, key);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(std::string_view utf8) {
  Separate();
  AppendJsonString(out_, utf8);
  return *this;
}

JsonWriter& JsonWriter::Uint(uint64_t v) {
  Separate();
  fmt::format_to(std::back_inserter(out_), "{}", v);
  return *this;
}

JsonWriter& JsonWriter::Int(int64_t v) {
  Separate();
  fmt::format_to(std::back_inserter(out_), "{}", v);
  return *this;
}

JsonWriter& JsonWriter::Double(double v) {
  Separate();
  if (std::isfinite(v)) {
    fmt::format_to(std::back_inserter(out_), "{:.6g}", v);
  } else {
    out_ += "null";
  }
  return *this;
}

JsonWriter& JsonWriter::Bool(bool v) {
  Separate();
  out_ += v ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::Null() {
  Separate();
  out_ += "null";
  return *this;
}

JsonWriter& JsonWriter::BytesField(std::string_view key, std::string_view bytes) {
  Separate();
  AppendJsonBytesField(out_, key, bytes);
  return *this;
}

void JsonWriter::Clear() {
  out_.clear();
  first_.clear();
  after_key_ = false;
}

std::string FormatTimestamp(int64_t ns) {
  const int64_t ms = ns >= 0 ? ns / 1'000'000 : -((-ns + 999'999) / 1'000'000);
  const std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const int64_t frac = ms - static_cast<int64_t>(secs) * 1000;
  std::tm tm{};
  if (gmtime_r(&secs, &tm) == nullptr) return fmt::format("{}ns", ns);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

// ---- Bus errors --------------------------------------------------------------

std::string ExplainBusOpen(const Status& s, std::string_view bus) {
  switch (s.code()) {
    case StatusCode::kNotFound:
      return fmt::format(
          "bus '{}' does not exist (start a broker with: runnel --bus {} broker, or create a "
          "topic with: runnel --bus {} topic create NAME)",
          bus, bus, bus);
    case StatusCode::kPermissionDenied:
      return fmt::format(
          "{} (the bus belongs to another user; ask its owner, or use another --bus)", s.message());
    case StatusCode::kUnavailable: {
      // The library's hint names BusOptions; say which commands create.
      constexpr std::string_view kLibraryHint = "open it with create_if_missing to create it";
      const std::string& m = s.message();
      if (!m.ends_with(kLibraryHint)) return m;
      return fmt::format(
          "{}start a broker (runnel --bus {} broker) or create a topic (runnel --bus "
          "{} topic create NAME): either creates it",
          m.substr(0, m.size() - kLibraryHint.size()), bus, bus);
    }
    default:
      return s.message();
  }
}

std::string RunnelCommand(const GlobalOptions& global) {
  return global.bus == "default" ? std::string("runnel") : "runnel --bus " + global.bus;
}

std::string ExplainTopicNotFound(std::string_view topic, const GlobalOptions& global,
                                 bool deleting) {
  std::string msg = fmt::format("topic '{}' not found on bus '{}'", topic, global.bus);
  const std::string runnel = RunnelCommand(global);
  std::error_code ec;
  const std::filesystem::path on_disk = std::filesystem::path(global.data_dir) / std::string(topic);
  // A log the next broker restores the topic from: settings, no tombstone
  // (a deleted topic's log is removed, never restored).
  if (std::filesystem::exists(on_disk / "topic.meta", ec) &&
      !std::filesystem::exists(on_disk / "topic.deleted", ec)) {
    if (Result<TopicOptions> o = ReadTopicMeta(global.data_dir, topic); !o.ok()) {
      return msg + fmt::format(
                       " (its log exists in {}, but no broker can restore the topic from it: "
                       "{}; see `runnel inspect {}`)",
                       on_disk.string(), o.status().message(), (on_disk / "topic.meta").string());
    }
    msg += fmt::format(
        " (its log exists in {}: start a broker with `{} broker` to bring the topic back, "
        "or read the log with `runnel replay {}`)",
        on_disk.string(), runnel, on_disk.string());
  } else if (deleting) {
    msg += fmt::format(" (the topics there: {} topic list)", runnel);
  } else {
    msg += fmt::format(" (create it with: {} topic create {})", runnel, topic);
  }
  return msg;
}

}  // namespace runnel::cli
