#include "tools/record_format.h"

#include "tools/cli_common.h"

namespace runnel::cli {

std::optional<OutputFormat> ParseOutputFormat(std::string_view text) {
  if (text == "value") return OutputFormat::kValue;
  if (text == "kv") return OutputFormat::kKv;
  if (text == "json") return OutputFormat::kJson;
  return std::nullopt;
}

void AppendRecord(std::string& out, OutputFormat format, std::string_view topic, uint32_t partition,
                  const RecordView& record, std::string_view key_separator) {
  switch (format) {
    case OutputFormat::kValue:
      out += record.value();
      out.push_back('\n');
      return;
    case OutputFormat::kKv:
      if (record.has_key()) out += record.key();
      out += key_separator;
      out += record.value();
      out.push_back('\n');
      return;
    case OutputFormat::kJson:
      break;
  }
  JsonWriter w;
  w.mutable_str().swap(out);  // append in place
  const int64_t ns = record.timestamp_ns();
  w.BeginObject();
  w.Key("topic").String(IsValidUtf8(topic) ? topic : std::string_view("?"));
  w.Key("partition").Uint(partition);
  w.Key("offset").Uint(record.offset());
  w.Key("timestamp_ms").Int(ns >= 0 ? ns / 1'000'000 : -((-ns + 999'999) / 1'000'000));
  w.Key("timestamp_ns").Int(ns);
  if (record.has_key()) {
    w.BytesField("key", record.key());
  } else {
    w.Key("key").Null();
  }
  w.BytesField("value", record.value());
  w.Key("headers").BeginArray();
  for (HeaderIterator it = record.headers(); it.valid(); it.Next()) {
    w.BeginObject().BytesField("name", it->name).BytesField("value", it->value).EndObject();
  }
  w.EndArray().EndObject();
  w.mutable_str().swap(out);
  out.push_back('\n');
}

std::string UnescapeSeparator(std::string_view text) {
  if (text == "tab" || text == "TAB") return "\t";
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      const char c = text[i + 1];
      if (c == 't' || c == 'n' || c == '\\') {
        out.push_back(c == 't' ? '\t' : c == 'n' ? '\n' : '\\');
        ++i;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

}  // namespace runnel::cli
