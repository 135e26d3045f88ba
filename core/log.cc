#include "core/log.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>
#include <utility>

namespace runnel {

namespace {

// Cold path only: a mutex serializes the sink calls and guards the sink.
std::mutex& SinkMutex() {
  static std::mutex mu;
  return mu;
}
LogSink& Sink() {
  static LogSink sink;
  return sink;
}

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

void SetLogSink(LogSink sink) {
  std::lock_guard<std::mutex> lock(SinkMutex());
  Sink() = std::move(sink);
}

void Log(LogLevel level, const char* format, ...) {
  char buf[4096];
  va_list args;
  va_start(args, format);
  const int n = std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  if (n < 0) return;
  const std::size_t length = std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1);
  std::lock_guard<std::mutex> lock(SinkMutex());
  if (Sink()) {
    Sink()(level, std::string_view(buf, length));
    return;
  }
  // One write per line, so lines of concurrent threads do not interleave.
  std::string line(buf, length);
  line += '\n';
  (void)std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace runnel
