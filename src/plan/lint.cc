#include "plan/lint.h"

#include <cctype>
#include <regex>
#include <unordered_map>

namespace tide {
namespace {

// The statement in upper case with string literals, quoted identifiers and comments blanked,
// so that rules match keywords only.
std::string Normalize(const std::string& sql) {
  std::string out;
  out.reserve(sql.size());
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {
      const char q = c;
      out += ' ';
      for (++i; i < sql.size(); ++i) {
        if (sql[i] == q && (i + 1 >= sql.size() || sql[i + 1] != q)) break;
        if (sql[i] == q) ++i;
      }
      out += ' ';
      continue;
    }
    if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      while (i < sql.size() && sql[i] != '\n') ++i;
      out += ' ';
      continue;
    }
    // Line breaks become spaces so that a rule's `.` spans a statement written on many lines.
    out += (c == '\n' || c == '\r' || c == '\t')
               ? ' '
               : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

bool Has(const std::string& upper, const std::string& pattern) {
  // The rules are a fixed set of patterns: each is compiled once per thread.
  thread_local std::unordered_map<std::string, std::regex> compiled;
  auto it = compiled.find(pattern);
  if (it == compiled.end()) it = compiled.emplace(pattern, std::regex(pattern)).first;
  return std::regex_search(upper, it->second);
}

// More than one statement: a semicolon with something other than space after it.
bool SeveralStatements(const std::string& upper) {
  const size_t semi = upper.find(';');
  if (semi == std::string::npos) return false;
  return upper.find_first_not_of(" \t\r\n;", semi) != std::string::npos;
}

const char* kVolatileCall =
    R"(\b(RANDOM|CLOCK_TIMESTAMP|TIMEOFDAY|GEN_RANDOM_UUID|UUID_GENERATE_V[14]|NEXTVAL|TXID_CURRENT)\s*\()";

}  // namespace

bool IsVolatileExpression(const std::string& sql) { return Has(Normalize(sql), kVolatileCall); }

std::string LintFinding::ToString(const std::string& file) const {
  std::string out = file;
  if (pos.line > 0) out += ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
  return out + ": " + phase + " step " + std::to_string(step) + ": " + rule + ": " + message +
         "; " + fix + " (or mark the step `unsafe: \"why\"` to run it as written)";
}

std::vector<LintFinding> LintStep(const std::string& sql, const std::string& phase,
                                  const std::vector<std::string>& earlier) {
  const std::string s = Normalize(sql);
  std::vector<LintFinding> out;
  auto add = [&](const char* rule, std::string message, std::string fix) {
    out.push_back(LintFinding{rule, phase, 0, {}, std::move(message), std::move(fix)});
  };
  if (SeveralStatements(s)) {
    add("one-statement-per-step", "the step holds more than one statement",
        "split it into one step per statement, so each runs, retries and is recorded on its own");
  }
  if (Has(s, R"(\bCREATE\s+(UNIQUE\s+)?INDEX\b)") && !Has(s, R"(\bCONCURRENTLY\b)")) {
    add("require-concurrent-index-creation",
        "CREATE INDEX without CONCURRENTLY blocks every write to the table while it builds",
        "use `create_index: {table, name, columns}` (CREATE INDEX CONCURRENTLY, cleaned up and "
        "retried if the build fails), or write CREATE INDEX CONCURRENTLY IF NOT EXISTS");
  }
  if (Has(s, R"(\bCONCURRENTLY\b)") && Has(s, R"(\b(BEGIN|START\s+TRANSACTION)\b)")) {
    add("ban-concurrent-index-creation-in-transaction",
        "CONCURRENTLY cannot run inside a transaction block",
        "drop the BEGIN/COMMIT: tide runs CONCURRENTLY statements on their own");
  }
  if (Has(s, R"(\bADD\s+(COLUMN\s+)?[^,]*\bNOT\s+NULL\b)") && !Has(s, R"(\bDEFAULT\b)") &&
      Has(s, R"(\bALTER\s+TABLE\b)") && !Has(s, R"(\bADD\s+CONSTRAINT\b)")) {
    add("adding-not-nullable-field",
        "ADD COLUMN ... NOT NULL without a default fails on a table with rows",
        "use `add_column` without not_null, a backfill task, then `set_not_null: {table, column}` "
        "in contract");
  }
  if (Has(s, R"(\bADD\s+(COLUMN\s+)?.*\bDEFAULT\s+[^,]*)" + std::string(kVolatileCall))) {
    add("adding-field-with-volatile-default",
        "a volatile DEFAULT rewrites the whole table under an ACCESS EXCLUSIVE lock",
        "use `add_column` without a default (or with a constant one) and fill it with a backfill task");
  }
  if (Has(s, R"(\bALTER\s+(COLUMN\s+)?[^,]*\b(SET\s+DATA\s+)?TYPE\b)") && Has(s, R"(\bALTER\s+TABLE\b)")) {
    add("changing-column-type",
        "ALTER COLUMN ... TYPE rewrites the table (and its indexes) under an ACCESS EXCLUSIVE lock",
        "use `alter_column: {table, column, type, up?, down?}` in expand: a shadow column kept "
        "in step both ways, backfilled, then switched in one short transaction");
  }
  if (Has(s, R"(\bSET\s+NOT\s+NULL\b)")) {
    bool validated = false;
    for (const auto& e : earlier) validated |= Has(Normalize(e), R"(\bVALIDATE\s+CONSTRAINT\b)");
    if (!validated) {
      add("set-not-null-without-validated-check",
          "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
          "use `set_not_null: {table, column}` (a NOT VALID check, VALIDATE, SET NOT NULL without "
          "a scan), or write ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID and VALIDATE "
          "CONSTRAINT in earlier steps");
    }
  }
  if (Has(s, R"(\bADD\s+CONSTRAINT\b[^;]*\b(FOREIGN\s+KEY|CHECK)\b)") && !Has(s, R"(\bNOT\s+VALID\b)")) {
    add("constraint-missing-not-valid",
        "adding a FOREIGN KEY or CHECK validates every row while holding a lock that blocks writes",
        "use `add_foreign_key` or `add_check` (NOT VALID, then VALIDATE CONSTRAINT, which blocks "
        "no writes), or write those two steps yourself");
  }
  if (Has(s, R"(\bRENAME\b)")) {
    add("renaming-column-or-table", "a rename breaks the application code that uses the old name",
        "use `rename_column: {table, from, to}` or `rename_table: {from, to}` in expand: the new "
        "version works through the plan's version schema until contract renames");
  }
  if (phase == "expand" && Has(s, R"(^\s*(ALTER\s+TABLE\b.*\bDROP\b|DROP\b))")) {
    add("ban-drop-in-expand", "expand must stay backward compatible; a DROP is not",
        "move it to contract (`drop_column`, `drop_index`)");
  }
  if (Has(s, R"(^\s*TRUNCATE\b)")) {
    add("ban-truncate", "TRUNCATE takes an ACCESS EXCLUSIVE lock and removes every row",
        "delete in batches if that is really meant");
  }
  if (Has(s, R"(^\s*VACUUM\b[^;]*\bFULL\b)")) {
    add("ban-vacuum-full", "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock",
        "use plain VACUUM, or pg_repack outside tide");
  }
  if (Has(s, R"(^\s*CLUSTER\b)")) {
    add("ban-cluster", "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock",
        "use pg_repack outside tide");
  }
  if (Has(s, R"(^\s*LOCK\s+(TABLE\b)?)")) {
    add("ban-lock-table", "an explicit LOCK TABLE holds production up for the whole step",
        "let each statement take the lock it needs, bounded by lock_timeout");
  }
  return out;
}

std::string LockTakenBy(const std::string& sql) {
  const std::string s = Normalize(sql);
  struct Rule {
    const char* pattern;
    const char* lock;
  };
  // First match wins: the specific forms before the general ones.
  static const Rule rules[] = {
      {R"(\b(CREATE|DROP|REINDEX)\b.*\bCONCURRENTLY\b)",
       "SHARE UPDATE EXCLUSIVE: reads and writes go on; waits for older transactions"},
      {R"(^\s*CREATE\s+(UNIQUE\s+)?INDEX\b)", "SHARE: blocks every write for the whole build"},
      {R"(\bVALIDATE\s+CONSTRAINT\b)", "SHARE UPDATE EXCLUSIVE while it scans: reads and writes go on"},
      {R"(\bADD\s+CONSTRAINT\b.*\bFOREIGN\s+KEY\b.*\bNOT\s+VALID\b)",
       "SHARE ROW EXCLUSIVE on both tables, brief: no scan"},
      {R"(\bADD\s+CONSTRAINT\b.*\bFOREIGN\s+KEY\b)",
       "SHARE ROW EXCLUSIVE on both tables while every row is checked: blocks writes"},
      {R"(\bADD\s+CONSTRAINT\b.*\bNOT\s+VALID\b)", "ACCESS EXCLUSIVE, brief: no scan"},
      {R"(\bSET\s+NOT\s+NULL\b)",
       "ACCESS EXCLUSIVE: brief after a validated CHECK (c IS NOT NULL), else for a full scan"},
      {R"(\bALTER\s+TABLE\b.*\b(SET\s+DATA\s+)?TYPE\b)", "ACCESS EXCLUSIVE for a table rewrite"},
      {R"(\bALTER\s+TABLE\b.*\bADD\s+CONSTRAINT\b)",
       "ACCESS EXCLUSIVE while every row is checked: blocks reads and writes"},
      {R"(\bALTER\s+TABLE\b.*\b(ADD|DROP)\b)", "ACCESS EXCLUSIVE, brief: a catalog change"},
      {R"(^\s*ALTER\s+TABLE\b)", "ACCESS EXCLUSIVE (most ALTER TABLE forms)"},
      {R"(^\s*CREATE\s+(OR\s+REPLACE\s+)?TRIGGER\b)", "SHARE ROW EXCLUSIVE, brief: blocks writes"},
      {R"(^\s*CREATE\b)", "none on existing tables"},
      {R"(^\s*(UPDATE|INSERT|DELETE)\b)", "ROW EXCLUSIVE, and row locks on the rows it writes"},
      {R"(^\s*VACUUM\b)", "SHARE UPDATE EXCLUSIVE: reads and writes go on"},
      {R"(^\s*(DROP\s+TABLE|TRUNCATE)\b)", "ACCESS EXCLUSIVE"},
      {R"(^\s*(SELECT|WITH)\b)", "ACCESS SHARE"},
  };
  for (const auto& r : rules) {
    if (Has(s, r.pattern)) return r.lock;
  }
  return "unknown: assume ACCESS EXCLUSIVE";
}

std::vector<LintFinding> LintPlan(const Plan& plan) {
  std::vector<LintFinding> out;
  std::vector<std::string> earlier;
  auto lint = [&](const std::vector<Step>& steps, const char* phase) {
    for (size_t i = 0; i < steps.size(); ++i) {
      if (steps[i].kind != OpKind::kSql) continue;
      if (!steps[i].unsafe.empty()) {
        earlier.push_back(steps[i].sql);
        continue;
      }
      for (auto f : LintStep(steps[i].sql, phase, earlier)) {
        f.step = i + 1;
        f.pos = steps[i].pos;
        out.push_back(std::move(f));
      }
      earlier.push_back(steps[i].sql);
    }
  };
  lint(plan.expand, "expand");
  lint(plan.contract, "contract");
  lint(plan.rollback, "rollback");
  return out;
}

}  // namespace tide
