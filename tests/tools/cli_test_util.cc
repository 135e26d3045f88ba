#include "tests/tools/cli_test_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace runnel::clitest {
namespace {

using Clock = std::chrono::steady_clock;

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// fork + exec with the given fds as 0/1/2 (-1: /dev/null). Returns the pid.
int Spawn(const std::vector<std::string>& argv, int in_fd, int out_fd, int err_fd) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int pid = ::fork();
  if (pid != 0) return pid;
  // Child: only async-signal-safe calls from here on.
  const int null_fd = ::open("/dev/null", O_RDWR);
  ::dup2(in_fd >= 0 ? in_fd : null_fd, 0);
  ::dup2(out_fd >= 0 ? out_fd : null_fd, 1);
  ::dup2(err_fd >= 0 ? err_fd : null_fd, 2);
  // Default signal dispositions and mask for the child.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  for (int fd = 3; fd < 1024; ++fd) ::close(fd);
  ::execvp(args[0], args.data());
  ::_exit(127);
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Reads what is available from fd into out; false at EOF.
bool ReadSome(int fd, std::string& out) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

}  // namespace

RunResult RunProcess(const std::vector<std::string>& argv, const std::string& input,
                     std::chrono::milliseconds timeout) {
  RunResult r;
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    return r;
  }
  ::signal(SIGPIPE, SIG_IGN);  // the test process writes to the child's stdin
  const int pid = Spawn(argv, in[0], out[1], err[1]);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  SetNonBlocking(in[1]);
  SetNonBlocking(out[0]);
  SetNonBlocking(err[0]);
  std::size_t written = 0;
  int in_fd = in[1];
  if (input.empty()) {
    ::close(in_fd);
    in_fd = -1;
  }
  bool out_open = true, err_open = true;
  const auto deadline = Clock::now() + timeout;
  while (out_open || err_open) {
    pollfd fds[3];
    int n = 0;
    if (out_open) fds[n++] = {out[0], POLLIN, 0};
    if (err_open) fds[n++] = {err[0], POLLIN, 0};
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (out_open) out_open = ReadSome(out[0], r.out);
    if (err_open) err_open = ReadSome(err[0], r.err);
    if (in_fd >= 0) {
      const ssize_t w = ::write(in_fd, input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
        ::close(in_fd);
        in_fd = -1;
      }
    }
  }
  if (in_fd >= 0) ::close(in_fd);
  ::close(out[0]);
  ::close(err[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = ExitCode(status);
  return r;
}

Child::Child(const std::vector<std::string>& argv) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return;
  pid_ = Spawn(argv, -1, out[1], err[1]);
  ::close(out[1]);
  ::close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
  SetNonBlocking(out_fd_);
  SetNonBlocking(err_fd_);
}

Child::~Child() {
  if (pid_ > 0 && !exit_code_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

void Child::Drain(int timeout_ms) {
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  ::poll(fds, 2, timeout_ms);
  ReadSome(out_fd_, out_);
  ReadSome(err_fd_, err_);
}

bool Child::WaitForStderr(const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (err_.find(text) == std::string::npos) {
    if (Clock::now() >= deadline) return false;
    Drain(20);
    int status = 0;
    if (!exit_code_ && ::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = ExitCode(status);
      Drain(0);
      return err_.find(text) != std::string::npos;
    }
  }
  return true;
}

int Child::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!exit_code_) {
    int status = 0;
    const int w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_) {
      exit_code_ = ExitCode(status);
      break;
    }
    if (Clock::now() >= deadline) return -1;
    Drain(10);
  }
  Drain(0);
  return *exit_code_;
}

int Child::Stop(int sig, std::chrono::milliseconds timeout) {
  if (exit_code_) return *exit_code_;
  ::kill(pid_, sig);
  const int code = Wait(timeout);
  if (code == -1) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exit_code_ = ExitCode(status);
    return -1;
  }
  return code;
}

std::optional<std::string> Python() {
  for (const char* p : {"/usr/bin/python3", "/usr/local/bin/python3"}) {
    if (::access(p, X_OK) == 0) return std::string(p);
  }
  return std::nullopt;
}

bool IsJson(const std::string& text) {
  const std::optional<std::string> py = Python();
  if (!py) return false;
  RunResult r = RunProcess({*py, "-c", "import json,sys; json.load(sys.stdin)"}, text,
                           std::chrono::seconds(20));
  return r.exit_code == 0;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {
      out.push_back(text.substr(start));
      break;
    }
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

}  // namespace runnel::clitest
