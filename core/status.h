// Status and Result<T>: the return types of every cold path (open, map,
// recover). Hot paths return small enums instead (see core/ring.h).
//
// A Status is either OK or carries a code and a human-readable message. The
// code kCorruption is reserved for "bytes we read are not what we wrote":
// callers that see it know data may have been lost.

#ifndef RUNNEL_CORE_STATUS_H_
#define RUNNEL_CORE_STATUS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace runnel {

enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument = 1,      // the caller passed something we refuse (bad name, size,
                             // options naming a partition the topic does not have)
  kNotFound = 2,             // unknown topic or file; a partition a consumer does not
                             // read (Seek, Position)
  kAlreadyExists = 3,        // create of something that exists with other settings
  kCorruption = 4,           // bytes on disk or in shared memory fail validation
  kIoError = 5,              // a system call failed (errno in the message)
  kTimeout = 6,              // a bounded wait ran out
  kPermissionDenied = 7,     // EACCES/EPERM on a shared region or directory
  kVersionMismatch = 8,      // a shared region or file of another layout version
  kUnavailable = 9,          // not (yet) there: broker not running, region not ready
  kOutOfRange = 10,          // offset before the log start or after its end
  kResourceExhausted = 11,   // disk full, no free slot, ring full
  kFailedPrecondition = 12,  // the object is in the wrong state for the call
  kInternal = 13,
};

// Returns a stable lower-case name for `code` ("corruption", "not_found", ...).
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status Timeout(std::string m) { return {StatusCode::kTimeout, std::move(m)}; }
  static Status PermissionDenied(std::string m) {
    return {StatusCode::kPermissionDenied, std::move(m)};
  }
  static Status VersionMismatch(std::string m) {
    return {StatusCode::kVersionMismatch, std::move(m)};
  }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  // Builds an kIoError (or kPermissionDenied / kResourceExhausted / kNotFound
  // where errno says so) from a failed system call: "<what>: <strerror>".
  static Status FromErrno(int err, std::string_view what);

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "ok" or "<code name>: <message>".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  // REQUIRES: ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace runnel

// Returns the Status of `expr` from the enclosing function if it is not OK.
#define RUNNEL_RETURN_IF_ERROR(expr) \
  do {                               \
    ::runnel::Status _st = (expr);   \
    if (!_st.ok()) return _st;       \
  } while (0)

#endif  // RUNNEL_CORE_STATUS_H_
