#include "tools/perf_stats.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace runnel::perf {

ClockPoint ClockPoint::Now() {
  // Read the TSC between two monotonic readings and take their midpoint, so
  // the pair is consistent to within one clock_gettime.
  const int64_t before = MonotonicNanos();
  const uint64_t ticks = Ticks();
  const int64_t after = MonotonicNanos();
  return {before + (after - before) / 2, ticks};
}

double NanosPerTick(const ClockPoint& a, const ClockPoint& b) {
  const int64_t ns = b.mono_ns - a.mono_ns;
  if (b.ticks <= a.ticks || ns < 1'000'000) return 1.0;  // under 1 ms: no useful ratio
  return static_cast<double>(ns) / static_cast<double>(b.ticks - a.ticks);
}

Histogram::Histogram() : counts_(kBuckets, 0) {}

uint64_t Histogram::UpperEdge(uint32_t index) {
  if (index < kLinear) return index;
  const uint32_t k = index - kLinear;
  const uint32_t msb = 8 + k / kSubBuckets;
  const uint32_t shift = msb - 7;
  const uint64_t next_mantissa = kSubBuckets + k % kSubBuckets + 1;  // <= 256
  if (next_mantissa == 256 && shift == 56) return UINT64_MAX;        // 2^64 - 1
  return (next_mantissa << shift) - 1;
}

void Histogram::Merge(const Histogram& other) {
  for (uint32_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
}

uint64_t Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (uint32_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(UpperEdge(i), max_);
  }
  return max_;
}

std::string Histogram::Serialize() const {
  std::string out;
  char buf[48];
  for (uint32_t i = 0; i < kBuckets; ++i) {
    if (counts_[i] == 0) continue;
    const int n = std::snprintf(buf, sizeof buf, "%s%u:%llu", out.empty() ? "" : ",", i,
                                static_cast<unsigned long long>(counts_[i]));
    out.append(buf, static_cast<std::size_t>(n));
  }
  out += ';';
  out += std::to_string(max_);
  return out;
}

namespace {

bool ParseU64(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::optional<Histogram> Histogram::Parse(std::string_view text) {
  const std::size_t semi = text.rfind(';');
  if (semi == std::string_view::npos) return std::nullopt;
  Histogram h;
  if (!ParseU64(text.substr(semi + 1), h.max_)) return std::nullopt;
  std::string_view rest = text.substr(0, semi);
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const std::size_t colon = item.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    uint64_t index = 0;
    uint64_t count = 0;
    if (!ParseU64(item.substr(0, colon), index) || !ParseU64(item.substr(colon + 1), count) ||
        index >= kBuckets) {
      return std::nullopt;
    }
    h.counts_[index] += count;
    h.count_ += count;
  }
  return h;
}

Percentiles ComputePercentiles(const Histogram& ticks, double ns_per_tick) {
  auto ns = [&](uint64_t t) {
    return static_cast<uint64_t>(std::llround(static_cast<double>(t) * ns_per_tick));
  };
  Percentiles p;
  p.p50 = ns(ticks.Percentile(0.50));
  p.p90 = ns(ticks.Percentile(0.90));
  p.p99 = ns(ticks.Percentile(0.99));
  p.p999 = ns(ticks.Percentile(0.999));
  p.p9999 = ns(ticks.Percentile(0.9999));
  p.max = ns(ticks.max());
  return p;
}

std::string ReportLine::Format() const {
  std::string out = tag;
  for (const auto& [k, v] : fields) {
    out += ' ';
    out += k;
    out += '=';
    out += v;
  }
  out += '\n';
  return out;
}

std::optional<ReportLine> ReportLine::Parse(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  ReportLine r;
  bool first = true;
  while (!line.empty()) {
    const std::size_t sp = line.find(' ');
    const std::string_view word = line.substr(0, sp);
    line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    if (word.empty()) continue;
    if (first) {
      r.tag = std::string(word);
      first = false;
      continue;
    }
    const std::size_t eq = word.find('=');
    if (eq == std::string_view::npos || eq == 0) return std::nullopt;
    r.fields[std::string(word.substr(0, eq))] = std::string(word.substr(eq + 1));
  }
  if (first) return std::nullopt;
  return r;
}

uint64_t ReportLine::U64(const std::string& key) const {
  auto it = fields.find(key);
  uint64_t v = 0;
  if (it == fields.end() || !ParseU64(it->second, v)) return 0;
  return v;
}

int64_t ReportLine::I64(const std::string& key) const {
  auto it = fields.find(key);
  if (it == fields.end()) return 0;
  int64_t v = 0;
  const std::string& s = it->second;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return 0;
  return v;
}

std::string ReportLine::Str(const std::string& key) const {
  auto it = fields.find(key);
  return it == fields.end() ? std::string() : it->second;
}

std::string GroupThousands(uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  const std::size_t n = digits.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0 && (n - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string FormatNanos(uint64_t ns) {
  char buf[32];
  if (ns < 1000) {
    std::snprintf(buf, sizeof buf, "%llu ns", static_cast<unsigned long long>(ns));
  } else if (ns < 1'000'000) {
    std::snprintf(buf, sizeof buf, "%.1f us", static_cast<double>(ns) / 1e3);
  } else if (ns < 1'000'000'000) {
    std::snprintf(buf, sizeof buf, "%.2f ms", static_cast<double>(ns) / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", static_cast<double>(ns) / 1e9);
  }
  return buf;
}

std::optional<std::vector<int>> ParseCpuList(std::string_view text) {
  std::vector<int> cpus;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const std::size_t dash = item.find('-');
    uint64_t lo = 0;
    uint64_t hi = 0;
    if (dash == std::string_view::npos) {
      if (!ParseU64(item, lo)) return std::nullopt;
      hi = lo;
    } else if (!ParseU64(item.substr(0, dash), lo) || !ParseU64(item.substr(dash + 1), hi)) {
      return std::nullopt;
    }
    if (lo > hi || hi >= 1024) return std::nullopt;
    for (uint64_t c = lo; c <= hi; ++c) cpus.push_back(static_cast<int>(c));
  }
  if (cpus.empty()) return std::nullopt;
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::string FormatCpuList(const std::vector<int>& cpus) {
  std::string out;
  for (int c : cpus) {
    if (!out.empty()) out += ',';
    out += std::to_string(c);
  }
  return out;
}

}  // namespace runnel::perf
