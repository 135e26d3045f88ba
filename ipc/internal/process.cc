#include "ipc/internal/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace runnel::internal {

namespace {

struct ProcStat {
  char state = '?';
  uint64_t start_time = 0;
};

// Fields 3 (state) and 22 (start time) of /proc/<pid>/stat.
std::optional<ProcStat> ReadProcStat(int32_t pid) {
  if (pid <= 0) return std::nullopt;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  // The line is short (< 1 KiB); comm (field 2) is at most 64 bytes on Linux.
  char buf[4096];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  // comm may contain spaces and parentheses: fields restart after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return std::nullopt;
  ++p;
  ProcStat out;
  if (p[0] == ' ' && p[1] != '\0') out.state = p[1];
  // After ')' come fields 3.. separated by single spaces; we want field 22.
  int field = 2;
  while (*p != '\0' && field < 22) {
    if (*p == ' ') ++field;
    ++p;
  }
  if (field != 22) return std::nullopt;
  uint64_t v = 0;
  bool any = false;
  while (*p >= '0' && *p <= '9') {
    v = v * 10 + static_cast<uint64_t>(*p - '0');
    ++p;
    any = true;
  }
  if (!any) return std::nullopt;
  out.start_time = v;
  return out;
}

// Threads listed in /proc/<pid>/task (0 if it cannot be read).
int TaskCount(int32_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/task", static_cast<int>(pid));
  DIR* dir = ::opendir(path);
  if (dir == nullptr) return 0;
  int n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

}  // namespace

std::optional<uint64_t> ProcessStartTime(int32_t pid) {
  const std::optional<ProcStat> st = ReadProcStat(pid);
  if (!st) return std::nullopt;
  return st->start_time;
}

ProcessIdentity SelfIdentity() {
  ProcessIdentity id;
  id.pid = static_cast<int32_t>(::getpid());
  id.start_time = ProcessStartTime(id.pid).value_or(0);
  return id;
}

Liveness CheckProcess(int32_t pid, uint64_t start_time) {
  if (pid <= 0) return Liveness::kDead;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return Liveness::kDead;
  const std::optional<ProcStat> now = ReadProcStat(pid);
  if (!now) {
    // Gone between the two calls, or /proc is not readable (hidepid): only
    // trust a definite answer.
    if (::kill(pid, 0) != 0 && errno == ESRCH) return Liveness::kDead;
    return Liveness::kAlive;
  }
  if (start_time != 0 && now->start_time != start_time) return Liveness::kDead;  // pid recycled
  // A zombie (killed, not yet reaped by its parent) has exited: its locks and
  // mappings are gone, only its pid remains. (A leader thread that left with
  // pthread_exit shows as a zombie while its other threads run on.)
  if ((now->state == 'Z' || now->state == 'X') && TaskCount(pid) <= 1) return Liveness::kDead;
  return Liveness::kAlive;
}

}  // namespace runnel::internal
