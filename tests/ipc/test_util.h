// Helpers for the ipc tests: unique bus names that clean up after
// themselves, and child processes (the runnel_ipc_test_helper executable)
// that are always killed and reaped.

#ifndef RUNNEL_TESTS_IPC_TEST_UTIL_H_
#define RUNNEL_TESTS_IPC_TEST_UTIL_H_

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/wait.h"
#include "gtest/gtest.h"
#include "ipc/bus.h"
#include "tests/ipc/test_values.h"

extern char** environ;

namespace runnel::testing {

inline std::string HelperPath() { return RUNNEL_BINARY_DIR "/tests/ipc/runnel_ipc_test_helper"; }

// A bus name unique to this process and test; removed at both ends.
class ScopedBusName {
 public:
  ScopedBusName() {
    static int counter = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string test = info != nullptr ? info->name() : "t";
    if (test.size() > 30) test.resize(30);
    for (char& c : test) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) c = '_';
    }
    name_ = "ut" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + test;
    (void)Bus::Remove(name_);
  }
  ~ScopedBusName() { (void)Bus::Remove(name_); }
  ScopedBusName(const ScopedBusName&) = delete;
  ScopedBusName& operator=(const ScopedBusName&) = delete;
  const std::string& operator*() const { return name_; }
  const std::string& str() const { return name_; }

 private:
  std::string name_;
};

// Every /dev/shm file of `bus`.
inline std::vector<std::string> BusFiles(const std::string& bus) {
  std::vector<std::string> out;
  const std::string prefix = "runnel." + bus + ".";
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.rfind(prefix, 0) == 0) out.push_back(n);
    }
    ::closedir(d);
  }
  return out;
}

// A child running the helper executable. Killed (SIGKILL) and reaped on
// destruction if still running. Its stdout is a pipe we can read lines from.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    std::vector<std::string> all = {HelperPath()};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, all[0].c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      return;
    }
    pid_ = pid;
    out_ = fds[0];
  }
  ~Child() {
    Kill();
    if (out_ >= 0) ::close(out_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool started() const { return pid_ > 0; }

  // The next line of the child's stdout (without '\n'), or nullopt after
  // `timeout` or EOF.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout) {
    const int64_t deadline = MonotonicNanos() + timeout.count() * 1'000'000;
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const int64_t left_ms = (deadline - MonotonicNanos()) / 1'000'000;
      if (left_ms <= 0 || out_ < 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      const int rc = ::poll(&p, 1, static_cast<int>(left_ms));
      if (rc <= 0) continue;
      char buf[512];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) {
        ::close(out_);
        out_ = -1;
        continue;
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }
  // Waits for a line equal to `want` (other lines are skipped).
  bool WaitForLine(const std::string& want, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      std::optional<std::string> line = ReadLine(left);
      if (!line) return false;
      if (*line == want) return true;
    }
    return false;
  }

  // Waits for exit up to `timeout`; returns the wait status, or nullopt (then
  // the child is still running).
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return status_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        status_ = status;
        return status;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  // Exit code if it exited normally within `timeout`, else -1 (killed).
  int ExitCode(std::chrono::milliseconds timeout) {
    std::optional<int> s = Wait(timeout);
    if (!s) {
      Kill();
      return -1;
    }
    return WIFEXITED(*s) ? WEXITSTATUS(*s) : -1;
  }
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      status_ = status;
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
  std::optional<int> status_;
};

// Polls `cond` every 5 ms until true or `timeout`.
inline bool Eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

}  // namespace runnel::testing

#endif  // RUNNEL_TESTS_IPC_TEST_UTIL_H_
