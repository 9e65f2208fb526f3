#include "tide/plan.h"

namespace tide {

const char* OpName(OpKind kind) {
  switch (kind) {
    case OpKind::kSql: return "sql";
    case OpKind::kAddColumn: return "add_column";
    case OpKind::kCreateIndex: return "create_index";
    case OpKind::kSetNotNull: return "set_not_null";
    case OpKind::kAddForeignKey: return "add_foreign_key";
    case OpKind::kAddCheck: return "add_check";
    case OpKind::kAddUnique: return "add_unique";
    case OpKind::kDropColumn: return "drop_column";
    case OpKind::kDropIndex: return "drop_index";
    case OpKind::kAlterColumn: return "alter_column";
    case OpKind::kRenameColumn: return "rename_column";
    case OpKind::kRenameTable: return "rename_table";
    case OpKind::kAddPrimaryKey: return "add_primary_key";
    case OpKind::kCreateVersionSchema: return "create_version_schema";
    case OpKind::kSwitch: return "switch";
    case OpKind::kUndoAlterations: return "undo_alterations";
    case OpKind::kRevertSwitch: return "revert_switch";
  }
  return "unknown";
}

namespace {
std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}
}  // namespace

std::string Step::Describe() const {
  const std::string op = OpName(kind);
  switch (kind) {
    case OpKind::kSql: return sql;
    case OpKind::kAddColumn: return op + " " + table.Display() + "." + column + " " + type;
    case OpKind::kSetNotNull:
    case OpKind::kDropColumn: return op + " " + table.Display() + "." + column;
    case OpKind::kCreateIndex:
      return op + " " + name.name + " on " + table.Display() + " (" +
             (columns.empty() ? expression : Join(columns)) + ")";
    case OpKind::kAddForeignKey:
      return op + " " + table.Display() + " (" + Join(columns) + ") -> " + ref_table.Display() +
             " (" + Join(ref_columns) + ")";
    case OpKind::kAddCheck: return op + " " + name.name + " on " + table.Display();
    case OpKind::kAddUnique:
      return op + " " + name.name + " on " + table.Display() + " (" + Join(columns) + ")";
    case OpKind::kDropIndex: return op + " " + name.Display();
    case OpKind::kAlterColumn:
      return op + " " + table.Display() + "." + column + (type.empty() ? "" : " " + type);
    case OpKind::kRenameColumn: return op + " " + table.Display() + "." + column + " to " + to;
    case OpKind::kRenameTable: return op + " " + table.Display() + " to " + to;
    case OpKind::kAddPrimaryKey:
      return op + " " + table.Display() + " (" + Join(columns) + ")";
    case OpKind::kCreateVersionSchema:
    case OpKind::kSwitch:
    case OpKind::kUndoAlterations:
    case OpKind::kRevertSwitch: {
      std::string out;
      for (const auto& a : alterations) out += (out.empty() ? "" : "; ") + a.Describe();
      return op + " of " + out;
    }
  }
  return op;
}

std::string Gate::Label(size_t index) const {
  if (!label.empty()) return label;
  if (kind == Kind::kNullCount) return "null_count:" + table.Display() + "." + column;
  return "sql#" + std::to_string(index + 1);
}

bool NullCountGateCovers(const Plan& plan, const QualifiedName& table, const std::string& column) {
  for (const auto& g : plan.gates) {
    if (g.kind == Gate::Kind::kNullCount && g.table == table && g.column == column) return true;
  }
  return false;
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
