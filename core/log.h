// Where the library's log lines go.
//
// The library logs only from cold paths of the broker side: the durability
// service (topics restored or removed, logs opened, recovery reports) and the
// persistence thread (write errors, retries, retention). Producers and
// consumers never log; they return statuses. By default every line goes to
// stderr as it is, e.g. "runnel broker: orders/0: log opened; persisting".
// A program that has its own logging installs a sink:
//
//   runnel::SetLogSink([](runnel::LogLevel level, std::string_view line) {
//     my_logger.log(ToMyLevel(level), line);
//   });
//
// The sink is called from the library's threads (the persistence thread
// among them), one call at a time, with a line that has no trailing newline.
// It must not call back into the library's logging. SetLogSink(nullptr)
// restores stderr.

#ifndef RUNNEL_CORE_LOG_H_
#define RUNNEL_CORE_LOG_H_

#include <cstdint>
#include <functional>
#include <string_view>

namespace runnel {

enum class LogLevel : uint8_t {
  kInfo = 0,     // progress: a topic restored, a log opened, a deleted log removed
  kWarning = 1,  // something was wrong and was handled: a recovery that cut a torn tail
  kError = 2,    // something does not work: a log cannot be opened or written
};
// "info", "warning", "error".
std::string_view LogLevelName(LogLevel level);

using LogSink = std::function<void(LogLevel level, std::string_view line)>;
// Replaces the sink for every later line; nullptr restores stderr.
void SetLogSink(LogSink sink);

// printf-style; the library's own use. A line longer than 4 KiB is cut.
void Log(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace runnel

#endif  // RUNNEL_CORE_LOG_H_
