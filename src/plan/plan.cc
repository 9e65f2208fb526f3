#include "tide/plan.h"

namespace tide {

std::string Gate::Label(size_t index) const {
  if (kind == Kind::kNullCount) return "null_count:" + table.Display() + "." + column;
  return "sql#" + std::to_string(index + 1);
}

std::string Diagnostic::ToString() const {
  std::string out = file.empty() ? "<plan>" : file;
  if (pos.line > 0) out += ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
  out += ": " + message;
  if (!hint.empty()) out += "; " + hint;
  return out;
}

std::string FormatDiagnostics(const std::vector<Diagnostic>& diags) {
  std::string out;
  for (const auto& d : diags) out += d.ToString() + "\n";
  return out;
}

}  // namespace tide
