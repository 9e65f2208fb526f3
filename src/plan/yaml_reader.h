// Typed, diagnosed access to a YAML document, shared by the plan and config parsers.
//
// Every accessor reports what is wrong as a Diagnostic with the file, line and column, and a hint
// that says what to write instead; it returns nullopt so that parsing can go on and report every
// problem in one pass. Not thread-safe; one reader per document.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tide/duration.h"
#include "tide/plan.h"

namespace tide {

// The durations a key accepts, [min, max]. `zero` completes "0 would ..." in the message that
// refuses 0 when min is above it: what PostgreSQL or tide would make of it.
struct DurationRange {
  Millis min;
  Millis max;
  const char* zero = "";
};

class YamlReader {
 public:
  YamlReader(std::string file, std::vector<Diagnostic>* diags)
      : file_(std::move(file)), diags_(diags) {}

  // Parses text into *root. On failure reports the syntax error (or an empty, oversized or
  // non-UTF-8 document) and returns false.
  bool Load(const std::string& text, YAML::Node* root, size_t max_bytes);

  SourcePos Pos(const YAML::Node& node) const;
  void Error(const YAML::Node& at, std::string message, std::string hint = "");
  void Error(SourcePos pos, std::string message, std::string hint = "");

  // Checks that `node` is a map whose keys are all in `allowed` and appear once. `what` names the
  // node in messages ("the plan", "backfill task 1").
  bool ExpectMap(const YAML::Node& node, const std::string& what,
                 const std::vector<std::string>& allowed);
  // The same, with the keys of `allowed` and `more`.
  bool ExpectMap(const YAML::Node& node, const std::string& what, std::vector<std::string> allowed,
                 const std::vector<std::string>& more) {
    allowed.insert(allowed.end(), more.begin(), more.end());
    return ExpectMap(node, what, allowed);
  }
  bool ExpectList(const YAML::Node& node, const std::string& what);

  // Accessors for map entries. A missing optional key gives nullopt without a diagnostic.
  std::optional<std::string> String(const YAML::Node& map, const std::string& key,
                                    const std::string& what, bool required);
  std::optional<int64_t> Int(const YAML::Node& map, const std::string& key,
                             const std::string& what, int64_t min, int64_t max);
  std::optional<double> Ratio(const YAML::Node& map, const std::string& key,
                              const std::string& what, double max);
  std::optional<Millis> Duration(const YAML::Node& map, const std::string& key,
                                 const std::string& what, const DurationRange& range);
  std::optional<bool> Bool(const YAML::Node& map, const std::string& key, const std::string& what);
  // A size: "1GB", "512MB" (see ParseByteSize).
  std::optional<int64_t> ByteSize(const YAML::Node& map, const std::string& key,
                                  const std::string& what);

  bool has_errors() const { return !diags_->empty(); }

 private:
  std::optional<std::string> Scalar(const YAML::Node& node, const std::string& what);

  std::string file_;
  std::vector<Diagnostic>* diags_;
};

// The name of a YAML node's kind for messages: "a map", "a list", "a string", "nothing".
std::string KindName(const YAML::Node& node);

// True when `text` is well-formed UTF-8.
bool IsValidUtf8(const std::string& text);

}  // namespace tide
