#include "tests/persistence/test_util.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/coding.h"
#include "persistence/format.h"

namespace runnel::testing {

namespace fs = std::filesystem;

std::vector<std::byte> MakeFrame(uint64_t offset, int64_t timestamp_ns, std::string_view key,
                                 std::string_view value, FrameState state) {
  const uint64_t len = FrameLength(key.size(), 0, value.size());
  std::vector<std::byte> f(AlignedFrameLength(len));
  WriteFrameHeader(f.data(), static_cast<uint32_t>(len), offset, timestamp_ns,
                   static_cast<uint16_t>(key.size()), 0, key.empty() ? 0 : kFlagHasKey);
  if (!key.empty()) std::memcpy(f.data() + kFrameHeaderLength, key.data(), key.size());
  if (!value.empty()) {
    std::memcpy(f.data() + kFrameHeaderLength + key.size(), value.data(), value.size());
  }
  SealFrame(f.data(), static_cast<uint32_t>(len));
  // A ring tag in the high bits: meaningless on disk, must be ignored.
  const uint64_t tag = (offset * 0x9E3779B97F4A7C15ull + 1) << 3;
  EncodeFixed64(f.data(), tag | static_cast<uint64_t>(state));
  return f;
}

std::vector<std::byte> MakePadding(uint32_t length) {
  std::vector<std::byte> f(AlignedFrameLength(length), std::byte{0x5A});  // stale bytes inside
  EncodeFixed64(f.data(), (uint64_t{0xABCDEF} << 3) | static_cast<uint64_t>(FrameState::kPadding));
  EncodeFixed32(f.data() + frame::kLength, length);
  return f;
}

std::vector<std::byte> MakeFrames(uint64_t first, uint64_t count, int64_t ts0, int64_t ts_step,
                                  std::size_t value_bytes) {
  std::vector<std::byte> out;
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t off = first + i;
    std::string value = "value-" + std::to_string(off);
    if (value.size() < value_bytes) value.resize(value_bytes, '.');
    Append(out, MakeFrame(off, ts0 + static_cast<int64_t>(i) * ts_step, "k", value));
  }
  return out;
}

void Append(std::vector<std::byte>& dst, const std::vector<std::byte>& src) {
  dst.insert(dst.end(), src.begin(), src.end());
}

TempDir::TempDir(bool in_memory) {
  const char* base = getenv("TMPDIR");
  std::string root = base && *base ? base : "/tmp";
  if (in_memory && fs::is_directory("/dev/shm")) root = "/dev/shm";
  std::string tmpl = root + "/runnel-persistence-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<std::byte> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
  return out;
}

void WriteFileBytes(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

uint64_t FileSizeOf(const std::string& path) { return fs::file_size(path); }
bool FileExists(const std::string& path) { return fs::exists(path); }

void PatchFile(const std::string& path, uint64_t position, const std::vector<std::byte>& bytes) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(position));
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void XorByte(const std::string& path, uint64_t position, uint8_t mask) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekg(static_cast<std::streamoff>(position));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ static_cast<char>(mask));
  f.seekp(static_cast<std::streamoff>(position));
  f.write(&c, 1);
}

void TruncateFile(const std::string& path, uint64_t size) { fs::resize_file(path, size); }

void LowerIndexTimestamps(const std::string& path, int64_t delta) {
  std::vector<std::byte> b = ReadFileBytes(path);
  for (uint64_t at = kFileHeaderLength; at + kTimeIndexEntryLength <= b.size();
       at += kTimeIndexEntryLength) {
    TimeIndexEntry e = DecodeTimeIndexEntry(b.data() + at);
    e.timestamp_ns -= delta;
    EncodeTimeIndexEntry(e, b.data() + at);
  }
  WriteFileBytes(path, b);
}

void CopyDir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) {
    if (e.is_regular_file()) {
      fs::copy_file(e.path(), fs::path(to) / e.path().filename(),
                    fs::copy_options::overwrite_existing);
    }
  }
}

std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::byte> Bytes(std::string_view s) {
  std::vector<std::byte> out(s.size());
  if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
  return out;
}

}  // namespace runnel::testing
