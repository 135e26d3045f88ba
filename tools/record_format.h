// How `consume` and `replay` print a record: one line per record.
//
//   value  the value bytes, then '\n' (a value holding '\n' spans lines: use json)
//   kv     key, the key separator (default TAB), value, '\n'; a record without
//          a key prints an empty key
//   json   one JSON object per line (docs/cli.md):
//          {"topic":"orders","partition":0,"offset":7,"timestamp_ms":1714566896789,
//           "timestamp_ns":1714566896789123456,"key":"k1","value":"v1",
//           "headers":[{"name":"h","value":"x"}]}
//          "key" is null when the record has none. A key, value, header name or
//          header value that is not valid UTF-8 is written as "<field>_b64"
//          with standard base64 instead (e.g. "value_b64":"AAEC").

#ifndef RUNNEL_TOOLS_RECORD_FORMAT_H_
#define RUNNEL_TOOLS_RECORD_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/record.h"

namespace runnel::cli {

enum class OutputFormat : uint8_t { kValue, kKv, kJson };

std::optional<OutputFormat> ParseOutputFormat(std::string_view text);

// Appends one line for the record to `out`.
void AppendRecord(std::string& out, OutputFormat format, std::string_view topic, uint32_t partition,
                  const RecordView& record, std::string_view key_separator);

// Interprets the escapes "\t", "\n", "\\" and the word "tab" in a
// --key-separator argument.
std::string UnescapeSeparator(std::string_view text);

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_RECORD_FORMAT_H_
