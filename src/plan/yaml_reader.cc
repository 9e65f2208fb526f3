#include "plan/yaml_reader.h"

#include <algorithm>
#include <set>

namespace tide {
namespace {

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string AllowedList(const std::vector<std::string>& allowed) {
  std::string out;
  for (const auto& k : allowed) out += (out.empty() ? "" : ", ") + k;
  return out;
}

std::string Suggest(const std::string& key, const std::vector<std::string>& allowed) {
  const std::string* best = nullptr;
  size_t best_distance = 3;  // suggest only close matches
  for (const auto& k : allowed) {
    size_t d = EditDistance(key, k);
    if (d < best_distance) best_distance = d, best = &k;
  }
  if (best) return "did you mean `" + *best + "`? Allowed keys: " + AllowedList(allowed);
  return "allowed keys: " + AllowedList(allowed);
}

}  // namespace

std::string KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a value";
    default: return "nothing";
  }
}

bool IsValidUtf8(const std::string& text) {
  size_t i = 0, n = text.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    if (len == 2 && c < 0xC2) return false;  // overlong
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) return false;
    }
    i += len;
  }
  return true;
}

namespace {

constexpr int kMaxFlowDepth = 64;

// The deepest nesting of `[` and `{` outside quotes and comments: a cheap guard, before the
// recursive YAML parser sees the text, against a document built to exhaust its stack.
int FlowDepth(const std::string& text) {
  int depth = 0, deepest = 0;
  char quote = 0;
  bool comment = false;
  for (char c : text) {
    if (comment) {
      comment = c != '\n';
    } else if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '#') {
      comment = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

bool YamlReader::Load(const std::string& text, YAML::Node* root, size_t max_bytes) {
  if (text.size() > max_bytes) {
    Error(SourcePos{}, "the file is " + std::to_string(text.size()) + " bytes, more than the " +
                           std::to_string(max_bytes) + " allowed",
          "split the change into smaller plans");
    return false;
  }
  if (!IsValidUtf8(text)) {
    Error(SourcePos{}, "the file is not valid UTF-8 text", "save it as UTF-8");
    return false;
  }
  if (text.find('\0') != std::string::npos) {
    Error(SourcePos{}, "the file contains a NUL byte", "save it as plain UTF-8 text");
    return false;
  }
  if (const int depth = FlowDepth(text); depth > kMaxFlowDepth) {
    Error(SourcePos{}, "the file nests brackets " + std::to_string(depth) + " levels deep, more "
                       "than the " + std::to_string(kMaxFlowDepth) + " allowed",
          "a plan needs a few levels; check for a runaway `[` or `{`");
    return false;
  }
  try {
    *root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    Error(SourcePos{e.mark.line + 1, e.mark.column + 1}, "YAML syntax error: " + e.msg,
          "check the indentation and quoting on this line and the one before");
    return false;
  }
  if (!root->IsDefined() || root->IsNull()) {
    Error(SourcePos{}, "the file is empty",
          "write a YAML map of `key: value` lines; plans/ and deploy/config/ have examples");
    return false;
  }
  return true;
}

SourcePos YamlReader::Pos(const YAML::Node& node) const {
  if (!node.IsDefined()) return SourcePos{};  // a missing key: Mark() would throw
  YAML::Mark m = node.Mark();
  if (m.is_null()) return SourcePos{};
  return SourcePos{m.line + 1, m.column + 1};
}

void YamlReader::Error(const YAML::Node& at, std::string message, std::string hint) {
  Error(Pos(at), std::move(message), std::move(hint));
}

void YamlReader::Error(SourcePos pos, std::string message, std::string hint) {
  diags_->push_back(Diagnostic{file_, pos, std::move(message), std::move(hint)});
}

bool YamlReader::ExpectMap(const YAML::Node& node, const std::string& what,
                           const std::vector<std::string>& allowed) {
  if (!node.IsMap()) {
    Error(node, what + " must be a map of `key: value` lines, found " + KindName(node),
          allowed.empty() ? "write `name: value` lines, one per entry"
                          : "allowed keys: " + AllowedList(allowed));
    return false;
  }
  std::set<std::string> seen;
  bool ok = true;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      Error(kv.first, "a key of " + what + " is " + KindName(kv.first) + ", not a name");
      ok = false;
      continue;
    }
    const std::string key = kv.first.Scalar();
    if (!seen.insert(key).second) {
      Error(kv.first, "`" + key + "` appears twice in " + what, "keep one of them");
      ok = false;
    } else if (!allowed.empty() &&
               std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      Error(kv.first, "unknown key `" + key + "` in " + what, Suggest(key, allowed));
      ok = false;
    }
  }
  return ok;
}

bool YamlReader::ExpectList(const YAML::Node& node, const std::string& what) {
  if (node.IsSequence()) return true;
  Error(node, what + " must be a list (lines starting with `- `), found " + KindName(node));
  return false;
}

std::optional<std::string> YamlReader::Scalar(const YAML::Node& node, const std::string& what) {
  if (!node.IsScalar()) {
    Error(node, what + " must be a single value, found " + KindName(node));
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<std::string> YamlReader::String(const YAML::Node& map, const std::string& key,
                                              const std::string& what, bool required) {
  const YAML::Node node = map[key];
  if (!node.IsDefined() || node.IsNull()) {
    if (required) {
      Error(map, what + " is missing the required key `" + key + "`",
            "add `" + key + ": ...`");
    }
    return std::nullopt;
  }
  return Scalar(node, "`" + key + "` in " + what);
}

std::optional<int64_t> YamlReader::Int(const YAML::Node& map, const std::string& key,
                                       const std::string& what, int64_t min, int64_t max) {
  auto text = String(map, key, what, false);
  if (!text) return std::nullopt;
  const std::string range = std::to_string(min) + ".." + std::to_string(max);
  try {
    size_t used = 0;
    long long v = std::stoll(*text, &used, 10);
    if (used == text->size() && v >= min && v <= max) return v;
  } catch (const std::exception&) {
  }
  Error(map[key], "`" + key + "` in " + what + " is `" + *text + "`, not a whole number in " + range,
        "write a number such as " + std::to_string(std::max<int64_t>(min, 1)));
  return std::nullopt;
}

std::optional<double> YamlReader::Ratio(const YAML::Node& map, const std::string& key,
                                        const std::string& what, double max) {
  auto text = String(map, key, what, false);
  if (!text) return std::nullopt;
  try {
    size_t used = 0;
    double v = std::stod(*text, &used);
    if (used == text->size() && v >= 0 && v <= max) return v;
  } catch (const std::exception&) {
  }
  Error(map[key], "`" + key + "` in " + what + " is `" + *text + "`, not a number from 0 to " +
                      std::to_string(static_cast<int>(max)),
        "e.g. 1 (0 turns it off)");
  return std::nullopt;
}

std::optional<Millis> YamlReader::Duration(const YAML::Node& map, const std::string& key,
                                           const std::string& what, const DurationRange& range) {
  auto text = String(map, key, what, false);
  if (!text) return std::nullopt;
  std::string error;
  auto d = ParseDuration(*text, &error);
  if (!d) {
    Error(map[key], "`" + key + "` in " + what + ": " + error);
    return std::nullopt;
  }
  if (*d >= range.min && *d <= range.max) return d;
  const std::string allowed = range.min.count() == 0
                                  ? "at most " + FormatDuration(range.max)
                                  : "between " + FormatDuration(range.min) + " and " +
                                        FormatDuration(range.max);
  const std::string why =
      d->count() == 0 && *range.zero ? std::string(" (0 would ") + range.zero + ")" : "";
  Error(map[key], "`" + key + "` in " + what + " must be " + allowed + ", not " + *text + why);
  return std::nullopt;
}

std::optional<bool> YamlReader::Bool(const YAML::Node& map, const std::string& key,
                                     const std::string& what) {
  auto v = String(map, key, what, false);
  if (!v) return std::nullopt;
  if (*v == "true") return true;
  if (*v == "false") return false;
  Error(map[key], "`" + key + "` in " + what + " must be true or false, not `" + *v + "`");
  return std::nullopt;
}

std::optional<int64_t> YamlReader::ByteSize(const YAML::Node& map, const std::string& key,
                                            const std::string& what) {
  auto text = String(map, key, what, false);
  if (!text) return std::nullopt;
  std::string error;
  auto v = ParseByteSize(*text, &error);
  if (!v) Error(map[key], "`" + key + "` in " + what + ": " + error, "0 turns it off");
  return v;
}

}  // namespace tide
