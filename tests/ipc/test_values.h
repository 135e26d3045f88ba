// Record values for the multi-process tests, shared by the tests and the
// helper executable: "<producer>:<seq>:" followed by filler bytes derived from
// both, so a consumer can check every byte it receives.

#ifndef RUNNEL_TESTS_IPC_TEST_VALUES_H_
#define RUNNEL_TESTS_IPC_TEST_VALUES_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace runnel::testing {

// Record values used by the multi-process tests: "<producer>:<seq>:" then
// filler bytes derived from both, so every byte is checkable.
inline std::string MakeValue(uint32_t producer, uint64_t seq, std::size_t size) {
  std::string v = std::to_string(producer) + ":" + std::to_string(seq) + ":";
  uint64_t x = (uint64_t{producer} << 40) ^ (seq * 0x9E3779B97F4A7C15ull);
  while (v.size() < size) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v.push_back(static_cast<char>('a' + x % 26));
  }
  return v;
}

// Parses a value made by MakeValue and checks every byte.
inline bool ParseValue(std::string_view v, uint32_t* producer, uint64_t* seq) {
  const auto c1 = v.find(':');
  if (c1 == std::string_view::npos) return false;
  const auto c2 = v.find(':', c1 + 1);
  if (c2 == std::string_view::npos) return false;
  auto number = [](std::string_view s, uint64_t* out) {
    if (s.empty() || s.size() > 19) return false;
    uint64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    *out = n;
    return true;
  };
  uint64_t p = 0;
  if (!number(v.substr(0, c1), &p) || !number(v.substr(c1 + 1, c2 - c1 - 1), seq)) return false;
  *producer = static_cast<uint32_t>(p);
  return MakeValue(*producer, *seq, v.size()) == v;
}

}  // namespace runnel::testing

#endif  // RUNNEL_TESTS_IPC_TEST_VALUES_H_
