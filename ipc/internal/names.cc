#include "ipc/internal/names.h"

namespace runnel::internal {

namespace {

bool IsNameChar(char c, bool allow_dot) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || (allow_dot && c == '.');
}

// Printable form of a rejected name for error messages (bounded, escaped).
std::string Quote(std::string_view name) {
  std::string out = "'";
  for (std::size_t i = 0; i < name.size() && i < 80; ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7F && c != '\'') {
      out += static_cast<char>(c);
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (name.size() > 80) out += "...";
  out += "'";
  return out;
}

Status ValidateName(std::string_view what, std::string_view name, bool allow_dot) {
  const std::string rule =
      allow_dot ? "names are 1 to 64 characters from [A-Za-z0-9._-] and not '.' or '..'"
                : "names are 1 to 64 characters from [A-Za-z0-9_-]";
  if (name.empty()) return Status::InvalidArgument(std::string(what) + " name is empty: " + rule);
  if (name.size() > kMaxNameLength) {
    return Status::InvalidArgument(std::string(what) + " name " + Quote(name) + " is " +
                                   std::to_string(name.size()) + " characters long: " + rule);
  }
  if (name == "." || name == "..") {
    return Status::InvalidArgument(std::string(what) + " name " + Quote(name) +
                                   " is not allowed: " + rule);
  }
  for (char c : name) {
    if (!IsNameChar(c, allow_dot)) {
      return Status::InvalidArgument(std::string(what) + " name " + Quote(name) +
                                     " contains a character that is not allowed: " + rule);
    }
  }
  return Status::Ok();
}

}  // namespace

Status ValidateTopicName(std::string_view name) { return ValidateName("topic", name, true); }

Status ValidateBusName(std::string_view name) { return ValidateName("bus", name, false); }

std::string BusFilePrefix(std::string_view bus) {
  std::string s(kShmPrefix);
  s += bus;
  s += '.';
  return s;
}

std::string DirectoryShmName(std::string_view bus) { return BusFilePrefix(bus) + "dir"; }

std::string RingShmName(std::string_view bus, std::string_view topic, uint32_t partition,
                        uint64_t generation) {
  std::string s = BusFilePrefix(bus);
  s += topic;
  s += '.';
  s += std::to_string(partition);
  s += '.';
  s += std::to_string(generation);
  return s;
}

std::string ShmPath(std::string_view shm_name) {
  std::string s(kShmDir);
  s += '/';
  s += shm_name;
  return s;
}

std::string DirectoryLockPath(std::string_view bus) { return ShmPath(BusFilePrefix(bus) + "lock"); }

std::string BrokerLockPath(std::string_view bus) { return ShmPath(BusFilePrefix(bus) + "broker"); }

}  // namespace runnel::internal
