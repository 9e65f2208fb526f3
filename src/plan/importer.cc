#include "plan/importer.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "plan/lint.h"
#include "plan/sql_parse.h"

namespace tide {
namespace {

std::string Trim(std::string s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && (std::isspace(static_cast<unsigned char>(s[e - 1])) || s[e - 1] == ',' || s[e - 1] == ';')) --e;
  return s.substr(b, e - b);
}

bool WordAt(const std::string& s, size_t i, const std::string& word) {
  if (i + word.size() > s.size()) return false;
  for (size_t k = 0; k < word.size(); ++k) {
    if (std::toupper(static_cast<unsigned char>(s[i + k])) != word[k]) return false;
  }
  auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '"'; };
  return (i == 0 || !ident(s[i - 1])) && (i + word.size() == s.size() || !ident(s[i + word.size()]));
}

// The first of `words` (upper case) in `s` from `from` on, outside parentheses, quotes and
// dollar quotes; npos when none.
size_t FindTopLevel(const std::string& s, size_t from, const std::vector<std::string>& words) {
  int depth = 0;
  for (size_t i = from; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '-' && i + 1 < s.size() && s[i + 1] == '-') {  // a comment to the end of the line
      while (i < s.size() && s[i] != '\n') ++i;
      continue;
    }
    if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      const size_t close = s.find("*/", i + 2);
      i = close == std::string::npos ? s.size() : close + 1;
      continue;
    }
    if (c == '\'' || c == '"') {
      // E'...\'...' strings escape with a backslash; '' and "" double.
      const bool escapes = c == '\'' && i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e');
      for (++i; i < s.size() && s[i] != c; ++i) {
        if (escapes && s[i] == '\\') ++i;
      }
      continue;
    }
    if (c == '$') {
      const size_t close = s.find('$', i + 1);
      if (close != std::string::npos) {
        const std::string tag = s.substr(i, close - i + 1);
        const size_t end = s.find(tag, close + 1);
        if (end != std::string::npos) {
          i = end + tag.size() - 1;
          continue;
        }
      }
    }
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth != 0) continue;
    for (const auto& w : words) {
      if (WordAt(s, i, w)) return i;
    }
  }
  return std::string::npos;
}

size_t Loc(const SqlNode& n) {
  const SqlNode* l = Field(n, "location");
  return l && l->is_number_integer() && l->get<int64_t>() >= 0 ? l->get<size_t>() : std::string::npos;
}

// "core.users" for a RangeVar.
std::string Rel(const SqlNode& body, const char* key = "relation") { return RelationName(Field(body, key)); }

struct Builder {
  const std::string& sql;  // the whole up file
  YAML::Node expand = YAML::Node(YAML::NodeType::Sequence);
  YAML::Node contract = YAML::Node(YAML::NodeType::Sequence);
  YAML::Node backfill = YAML::Node(YAML::NodeType::Sequence);
  YAML::Node gates = YAML::Node(YAML::NodeType::Sequence);
  YAML::Node rollback = YAML::Node(YAML::NodeType::Sequence);
  std::vector<ImportNote> notes;
  std::map<std::string, size_t> backfill_of;  // table -> its task
  std::set<std::string> added;                // "table.column" of the file's ADD COLUMNs

  void Note(size_t n, std::string text, bool review = false) { notes.push_back({n, std::move(text), review}); }

  YAML::Node Op(const std::string& op, YAML::Node args) {
    YAML::Node n;
    args.SetStyle(YAML::EmitterStyle::Flow);
    n[op] = args;
    return n;
  }

  void Raw(YAML::Node* phase, const std::string& phase_name, size_t n, const std::string& text) {
    YAML::Node step;
    step["sql"] = text;
    phase->push_back(step);
    std::string findings;
    for (const auto& f : LintStep(text, phase_name, std::vector<std::string>{})) {
      findings += (findings.empty() ? "" : "; ") + f.rule + ": " + f.message + " (" + f.fix + ")";
    }
    if (findings.empty()) {
      Note(n, "kept as written in " + phase_name);
    } else {
      Note(n, "kept as written in " + phase_name + ", and refused by the lint: " + findings +
                  "; rewrite it or mark it `unsafe:`", true);
    }
  }

  std::set<std::string> null_gates;
  void NullCountGate(const std::string& table, const std::string& column) {
    if (!null_gates.insert(table + "." + column).second) return;
    YAML::Node g;
    g["null_count"]["table"] = table;
    g["null_count"]["column"] = column;
    g["null_count"].SetStyle(YAML::EmitterStyle::Flow);
    gates.push_back(g);
  }

  std::vector<std::string> KeyNames(const SqlNode* list) {
    std::vector<std::string> out;
    if (!list) return out;
    for (const SqlNode& k : *list) {
      if (KindOf(k) == "String") out.push_back(StringField(BodyOf(k), "sval"));
    }
    return out;
  }

  void Index(size_t n, const SqlStatement& st) {
    const SqlNode& b = st.body;
    const std::string table = Rel(b);
    const std::string name = StringField(b, "idxname");
    std::vector<std::string> columns;
    const SqlNode* rel = Field(b, "relation");
    bool plain = !name.empty() && !Field(b, "indexIncludingParams") && !Field(b, "options") &&
                 !Field(b, "tableSpace") && !BoolField(b, "nulls_not_distinct") &&
                 rel && BoolField(*rel, "inh");  // ON ONLY: a partitioned table's parent index
    if (const SqlNode* params = Field(b, "indexParams")) {
      for (const SqlNode& p : *params) {
        const SqlNode& e = BodyOf(p);
        if (StringField(e, "name").empty() || Field(e, "opclass") || Field(e, "collation") ||
            StringField(e, "ordering") == "SORTBY_DESC") {
          plain = false;
        }
        columns.push_back(StringField(e, "name"));
      }
    }
    if (!plain) return Raw(&expand, "expand", n, st.text);
    YAML::Node a;
    a["table"] = table;
    a["name"] = name;
    a["columns"] = columns;
    a["columns"].SetStyle(YAML::EmitterStyle::Flow);
    if (BoolField(b, "unique")) a["unique"] = true;
    const std::string method = StringField(b, "accessMethod");
    if (!method.empty() && method != "btree") a["method"] = method;
    if (Field(b, "whereClause")) {
      const size_t w = FindTopLevel(st.text, 0, {"WHERE"});
      if (w == std::string::npos) return Raw(&expand, "expand", n, st.text);
      a["where"] = Trim(st.text.substr(w + 5));
    }
    expand.push_back(Op("create_index", a));
    Note(n, "create_index " + name + " (built CONCURRENTLY, cleaned up and retried if the build fails)");
  }

  void AlterTable(size_t n, const SqlStatement& st) {
    const SqlNode& b = st.body;
    const SqlNode* cmds = Field(b, "cmds");
    const std::string table = Rel(b);
    if (!cmds || cmds->size() != 1) return Raw(&expand, "expand", n, st.text);
    const SqlNode& cmd = BodyOf((*cmds)[0]);
    const std::string sub = StringField(cmd, "subtype");
    const SqlNode* def = Field(cmd, "def");
    const SqlNode empty = SqlNode::object();
    const SqlNode& d = def ? BodyOf(*def) : empty;
    const std::string column = StringField(cmd, "name");
    if (sub == "AT_AddColumn") return AddColumn(n, st, table, d);
    if (sub == "AT_SetNotNull") {
      YAML::Node a;
      a["table"] = table;
      a["column"] = column;
      contract.push_back(Op("set_not_null", a));
      NullCountGate(table, column);
      return Note(n, "set_not_null in contract (a NOT VALID check, VALIDATE, then SET NOT NULL without a "
                     "scan), after a null_count gate");
    }
    if (sub == "AT_DropColumn") {
      YAML::Node a;
      a["table"] = table;
      a["column"] = column;
      contract.push_back(Op("drop_column", a));
      return Note(n, "drop_column in contract: add a gate that proves no running version reads it", true);
    }
    if (sub == "AT_AlterColumnType") {
      const SqlNode* tn = Field(d, "typeName");
      const size_t at = tn ? Loc(*tn) : std::string::npos;
      if (at == std::string::npos || at < st.offset) return Raw(&expand, "expand", n, st.text);
      const std::string rest = sql.substr(at, st.offset + st.text.size() - at);
      const size_t using_at = FindTopLevel(rest, 0, {"USING"});
      YAML::Node a;
      a["table"] = table;
      a["column"] = column;
      a["type"] = Trim(rest.substr(0, using_at));
      if (using_at != std::string::npos) a["up"] = Trim(rest.substr(using_at + 5));
      expand.push_back(Op("alter_column", a));
      return Note(n, "alter_column: a shadow column kept in step both ways, backfilled, switched in contract "
                     "in one short transaction");
    }
    if (sub == "AT_AddConstraint") return AddConstraint(n, st, table, d);
    const bool relaxes = sub == "AT_DropNotNull" || sub == "AT_DropConstraint" ||
                         (sub == "AT_ColumnDefault" && !def);
    Raw(sub.rfind("AT_Drop", 0) == 0 && !relaxes ? &contract : &expand,
        sub.rfind("AT_Drop", 0) == 0 && !relaxes ? "contract" : "expand", n, st.text);
  }

  void AddColumn(size_t n, const SqlStatement& st, const std::string& table, const SqlNode& col) {
    if (LintStep(st.text, "expand", std::vector<std::string>{}).empty()) return Raw(&expand, "expand", n, st.text);
    // NOT NULL without a default, or a volatile default: the column is added nullable, filled
    // by the backfill (the file's UPDATE, or the default's expression), then made NOT NULL.
    const std::string column = StringField(col, "colname");
    const SqlNode* tn = Field(col, "typeName");
    const SqlNode* cons = Field(col, "constraints");
    size_t type_end = st.offset + st.text.size();
    std::string default_expr;
    bool not_null = false, other = false;
    for (const SqlNode& c : cons ? *cons : SqlNode::array()) {
      const SqlNode& cb = BodyOf(c);
      const size_t at = Loc(cb);
      if (at != std::string::npos && at < type_end) type_end = at;
      const std::string ct = StringField(cb, "contype");
      if (ct == "CONSTR_NOTNULL") {
        not_null = true;
      } else if (ct == "CONSTR_DEFAULT") {
        const size_t end = st.offset + st.text.size();
        std::string text = sql.substr(at, end - at);
        const size_t next = FindTopLevel(text, 7, {"NOT", "NULL", "CONSTRAINT", "CHECK", "REFERENCES", "UNIQUE", "PRIMARY", "COLLATE"});
        default_expr = Trim(text.substr(7, next == std::string::npos ? std::string::npos : next - 7));
      } else {
        other = true;
      }
    }
    const size_t tstart = tn ? Loc(*tn) : std::string::npos;
    if (other || tstart == std::string::npos || tstart >= type_end) return Raw(&expand, "expand", n, st.text);
    YAML::Node a;
    a["table"] = table;
    a["column"] = column;
    a["type"] = Trim(sql.substr(tstart, type_end - tstart));
    expand.push_back(Op("add_column", a));
    std::string what = "add_column (nullable)";
    if (!default_expr.empty()) {
      Fill(table, column, default_expr);
      YAML::Node s;
      s["sql"] = "ALTER TABLE " + QuotedTable(table) + " ALTER COLUMN " + Quoted(column) +
                 " SET DEFAULT " + default_expr;
      expand.push_back(s);  // a catalog change: new rows get it from now on
      what += ", its default set for new rows (a catalog change), the existing rows filled by a backfill task";
    }
    if (not_null) {
      YAML::Node s;
      s["table"] = table;
      s["column"] = column;
      contract.push_back(Op("set_not_null", s));
      NullCountGate(table, column);
      what += ", then set_not_null in contract after a null_count gate";
      if (default_expr.empty() && !backfill_of.count(table)) {
        what += "; nothing in the file fills the existing rows: add a backfill task";
        return Note(n, what, true);
      }
    }
    Note(n, what);
  }

  static std::string Quoted(const std::string& ident) {
    bool plain = !ident.empty() && (std::islower(static_cast<unsigned char>(ident[0])) || ident[0] == '_');
    for (char c : ident) plain &= std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_';
    if (plain) return ident;
    std::string out = "\"";
    for (char c : ident) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  }
  static std::string QuotedTable(const std::string& t) {
    const size_t dot = t.find('.');
    return dot == std::string::npos ? Quoted(t) : Quoted(t.substr(0, dot)) + "." + Quoted(t.substr(dot + 1));
  }

  void Fill(const std::string& table, const std::string& column, const std::string& expr) {
    auto it = backfill_of.find(table);
    if (it == backfill_of.end()) {
      YAML::Node t;
      t["table"] = table;
      backfill.push_back(t);
      it = backfill_of.emplace(table, backfill.size() - 1).first;
    }
    backfill[it->second]["set"][column] = expr;
  }

  void AddConstraint(size_t n, const SqlStatement& st, const std::string& table, const SqlNode& c) {
    const std::string ct = StringField(c, "contype");
    const std::string name = StringField(c, "conname");
    if (BoolField(c, "skip_validation") || !StringField(c, "indexname").empty()) {
      return Raw(&expand, "expand", n, st.text);
    }
    YAML::Node a;
    a["table"] = table;
    if (ct == "CONSTR_FOREIGN") {
      const auto cols = KeyNames(Field(c, "fk_attrs"));
      const auto refs = KeyNames(Field(c, "pk_attrs"));
      const std::string ref = RelationName(Field(c, "pktable"));
      // What add_foreign_key does not carry stays as written (NOT VALID is added by hand then).
      const std::string upd = StringField(c, "fk_upd_action"), matchtype = StringField(c, "fk_matchtype");
      const bool carried = (upd.empty() || upd == "a") && (matchtype.empty() || matchtype == "s") &&
                           !BoolField(c, "deferrable");
      if (cols.empty() || refs.size() != cols.size() || (!carried && name.empty())) {
        return Raw(&contract, "contract", n, st.text);
      }
      a["columns"] = cols;
      a["columns"].SetStyle(YAML::EmitterStyle::Flow);
      a["references"]["table"] = ref;
      a["references"]["columns"] = refs;
      a["references"]["columns"].SetStyle(YAML::EmitterStyle::Flow);
      a["references"].SetStyle(YAML::EmitterStyle::Flow);
      if (!name.empty()) a["name"] = name;
      static const std::map<std::string, std::string> actions = {
          {"c", "cascade"}, {"r", "restrict"}, {"n", "set null"}, {"d", "set default"}};
      auto act = actions.find(StringField(c, "fk_del_action"));
      if (act != actions.end()) a["on_delete"] = act->second;
      if (carried) {
        contract.push_back(Op("add_foreign_key", a));
      } else {
        // ON UPDATE, MATCH or DEFERRABLE, which add_foreign_key does not take: as written, in
        // its two safe steps.
        YAML::Node add, validate;
        add["sql"] = st.text + " NOT VALID";
        validate["sql"] = "ALTER TABLE " + QuotedTable(table) + " VALIDATE CONSTRAINT " + Quoted(name);
        contract.push_back(add);
        contract.push_back(validate);
      }
      contract_names.insert(name);
      // The gate: no row points nowhere (VALIDATE would fail on it after all the waiting).
      std::string match;
      for (size_t i = 0; i < cols.size(); ++i) {
        match += std::string(i ? " AND " : "") + "r." + Quoted(refs[i]) + " = t." + Quoted(cols[i]);
      }
      YAML::Node g;
      g["sql"] = "SELECT count(*) FROM " + QuotedTable(table) + " t WHERE t." + Quoted(cols[0]) +
                 " IS NOT NULL AND NOT EXISTS (SELECT 1 FROM " + QuotedTable(ref) + " r WHERE " + match + ")";
      g["expect"] = 0;
      gates.push_back(g);
      return Note(n, "add_foreign_key in contract (NOT VALID, then VALIDATE CONSTRAINT, which blocks no "
                     "writes), after a gate that no row points nowhere");
    }
    if (ct == "CONSTR_CHECK") {
      const size_t at = FindTopLevel(st.text, 0, {"CHECK"});
      const size_t open = at == std::string::npos ? at : st.text.find('(', at);
      if (open == std::string::npos || name.empty()) return Raw(&contract, "contract", n, st.text);
      int depth = 0;
      size_t close = open;
      for (; close < st.text.size(); ++close) {
        if (st.text[close] == '(') ++depth;
        if (st.text[close] == ')' && --depth == 0) break;
      }
      a["name"] = name;
      a["expression"] = Trim(st.text.substr(open + 1, close - open - 1));
      contract.push_back(Op("add_check", a));
      contract_names.insert(name);
      return Note(n, "add_check in contract (NOT VALID, then VALIDATE CONSTRAINT)");
    }
    if (ct == "CONSTR_UNIQUE" || ct == "CONSTR_PRIMARY") {
      const auto cols = KeyNames(Field(c, "keys"));
      if (cols.empty()) return Raw(&contract, "contract", n, st.text);
      a["columns"] = cols;
      a["columns"].SetStyle(YAML::EmitterStyle::Flow);
      if (!name.empty() || ct == "CONSTR_UNIQUE") a["name"] = name.empty() ? table + "_" + cols[0] + "_key" : name;
      if (ct == "CONSTR_UNIQUE") {
        contract.push_back(Op("add_unique", a));
        contract_names.insert(a["name"].as<std::string>());
        return Note(n, "add_unique in contract (the index built CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX)");
      }
      expand.push_back(Op("add_primary_key", a));
      return Note(n, "add_primary_key (the index built CONCURRENTLY, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX)");
    }
    Raw(&contract, "contract", n, st.text);
  }

  // An UPDATE as a backfill task, when that keeps its meaning: it fills columns this file adds
  // (an UPDATE of values the application already has would become "fill the NULLs"), one
  // UPDATE per table. False: it stays a raw step, in its place.
  bool Update(size_t n, const SqlStatement& st) {
    const SqlNode& b = st.body;
    const std::string table = Rel(b);
    const SqlNode* targets = Field(b, "targetList");
    if (!targets || Field(b, "returningList") || Field(b, "withClause")) return false;
    const std::string& t = st.text;
    const size_t set_at = FindTopLevel(t, 0, {"SET"});
    const size_t from_at = FindTopLevel(t, set_at, {"FROM"});
    const size_t where_at = FindTopLevel(t, set_at, {"WHERE"});
    const size_t list_end = std::min(from_at, where_at);
    // The SET list, split at its top-level commas.
    std::vector<std::pair<std::string, std::string>> set;
    std::string list = t.substr(set_at + 3, list_end == std::string::npos ? std::string::npos : list_end - set_at - 3);
    size_t start = 0;
    int depth = 0;
    for (size_t i = 0; i <= list.size(); ++i) {
      const char c = i < list.size() ? list[i] : ',';
      if (c == '\'' || c == '"') {
        for (++i; i < list.size() && list[i] != c; ++i) {
        }
        continue;
      }
      if (c == '(') ++depth;
      if (c == ')') --depth;
      if (c == ',' && depth == 0) {
        const std::string item = Trim(list.substr(start, i - start));
        const size_t eq = item.find('=');
        if (eq == std::string::npos) return false;
        std::string col = Trim(item.substr(0, eq));
        if (col.size() > 1 && col.front() == '"') col = col.substr(1, col.size() - 2);
        set.emplace_back(col, Trim(item.substr(eq + 1)));
        start = i + 1;
      }
    }
    if (set.size() != targets->size()) return false;
    if (backfill_of.count(table)) return false;  // a second UPDATE of the table keeps its own WHERE
    for (const auto& [c, e] : set) {
      if (!added.count(table + "." + c)) return false;
    }
    std::string where = where_at == std::string::npos ? "" : Trim(t.substr(where_at + 5));
    // The backfill names the table itself: an alias of the UPDATE's (`UPDATE t x SET ...`)
    // becomes the table's name.
    const SqlNode* rel = Field(b, "relation");
    const SqlNode* alias = rel ? Field(*rel, "alias") : nullptr;
    const std::string alias_name = alias ? StringField(BodyOf(*alias).is_object() && Field(BodyOf(*alias), "aliasname")
                                                            ? BodyOf(*alias) : *alias, "aliasname")
                                         : "";
    if (!alias_name.empty()) {
      const std::string bare = table.substr(table.rfind('.') + 1);
      auto unalias = [&](std::string s) {
        for (const std::string& from : {alias_name + ".", "\"" + alias_name + "\"."}) {
          for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + 1)) {
            if (at > 0 && (std::isalnum(static_cast<unsigned char>(s[at - 1])) || s[at - 1] == '_' || s[at - 1] == '.')) continue;
            s.replace(at, from.size(), Quoted(bare) + ".");
          }
        }
        return s;
      };
      where = unalias(where);
      for (auto& kv : set) kv.second = unalias(kv.second);
    }
    if (from_at != std::string::npos) {
      // UPDATE t SET c = e FROM other o WHERE join: a task over t's key, each value looked up in
      // the other table (`from:`).
      const std::string from = Trim(t.substr(from_at + 4, where_at == std::string::npos ? std::string::npos
                                                                                    : where_at - from_at - 4));
      auto it = backfill_of.find(table);
      if (it != backfill_of.end()) return false;
      YAML::Node task;
      task["table"] = table;
      task["from"] = from;
      if (!where.empty()) task["where"] = where;
      for (const auto& [c, e] : set) task["set"][c] = e;
      backfill.push_back(task);
      backfill_of[table] = backfill.size() - 1;
      YAML::Node g;
      std::string empty;
      for (const auto& [c, e] : set) empty += (empty.empty() ? "" : " OR ") + Quoted(c) + " IS NULL";
      g["sql"] = "SELECT count(*) FROM " + QuotedTable(table) + " WHERE (" + empty + ") AND EXISTS (SELECT 1 FROM " +
                 from + (where.empty() ? "" : " WHERE " + where) + ")";
      g["expect"] = 0;
      gates.push_back(g);
      Note(n, "a backfill task with `from: " + from + "` (batched by " + table +
              "'s key, throttled, resumable), gated on no row with a match left unfilled");
      return true;
    }
    for (const auto& [c, e] : set) Fill(table, c, e);
    if (!where.empty()) backfill[backfill_of[table]]["where"] = where;
    YAML::Node g;
    std::string differs;
    for (const auto& [c, e] : set) differs += (differs.empty() ? "" : " OR ") + Quoted(c) + " IS DISTINCT FROM (" + e + ")";
    g["sql"] = "SELECT count(*) FROM " + QuotedTable(table) + " WHERE (" + where + ") AND (" + differs + ")";
    g["expect"] = 0;
    if (!where.empty()) gates.push_back(g);
    else for (const auto& [c, e] : set) NullCountGate(table, c);
    Note(n, "a backfill task (batched, throttled, resumable)" +
                std::string(where.empty() ? ", with a null_count gate per column"
                                          : ", gated on no row its WHERE selects left without the value"));
    return true;
  }

  std::vector<std::string> texts;  // every statement of the up file, in order
  std::set<std::string> contract_names;  // constraints contract adds
  // True when a statement after the n-th (1-based) names `name` as a word.
  bool NamedLater(size_t n, const std::string& name) const {
    for (size_t i = n; i < texts.size(); ++i) {
      for (size_t at = texts[i].find(name); at != std::string::npos; at = texts[i].find(name, at + 1)) {
        auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
        const bool before = at == 0 || !ident(texts[i][at - 1]);
        const bool after = at + name.size() >= texts[i].size() || !ident(texts[i][at + name.size()]);
        if (before && after) return true;
      }
    }
    return false;
  }

  void Statement(size_t n, const SqlStatement& st) {
    const std::string& k = st.kind;
    if (k == "TransactionStmt") return Note(n, "dropped: tide runs each step in a transaction of its own");
    if (k == "IndexStmt") return Index(n, st);
    if (k == "AlterTableStmt") return AlterTable(n, st);
    if (k == "RenameStmt") {
      const std::string type = StringField(st.body, "renameType");
      if (type != "OBJECT_COLUMN" && type != "OBJECT_TABLE") return Raw(&expand, "expand", n, st.text);
      const std::string op = type == "OBJECT_COLUMN" ? "rename_column" : "rename_table";
      YAML::Node a;
      if (type == "OBJECT_COLUMN") {
        a["table"] = Rel(st.body);
        a["from"] = StringField(st.body, "subname");
      } else {
        a["from"] = Rel(st.body);
      }
      a["to"] = StringField(st.body, "newname");
      expand.push_back(Op(op, a));
      if (NamedLater(n, StringField(st.body, "newname"))) {
        return Note(n, op + ": the new name is there only through the plan's version schema until "
                            "contract, but a later statement uses it: move that statement to a later plan", true);
      }
      return Note(n, op + ": the new name through the plan's version schema until contract");
    }
    if (k == "DropStmt") {
      const std::string type = StringField(st.body, "removeType");
      // Dropped and made again by a later statement (DROP TRIGGER IF EXISTS t; CREATE TRIGGER
      // t): it stays where it is, so that contract does not drop what expand made.
      const SqlNode* objs = Field(st.body, "objects");
      std::string last;
      if (objs && !objs->empty()) {
        const SqlNode& o = (*objs)[0];
        const auto names = KindOf(o) == "List" ? Names(Field(BodyOf(o), "items")) : std::vector<std::string>{};
        if (!names.empty()) last = names.back();
        if (KindOf(o) == "String") last = StringField(BodyOf(o), "sval");
      }
      if (!last.empty() && NamedLater(n, last)) {
        Raw(&expand, "expand", n, st.text);
        return Note(n, "kept in its place: a later statement makes `" + last + "` again", true);
      }
      if (type == "OBJECT_INDEX") {
        const SqlNode* objects = Field(st.body, "objects");
        if (objects && objects->size() == 1) {
          const auto names = Names(Field(BodyOf((*objects)[0]), "items"));
          std::string name;
          for (const auto& p : names) name += (name.empty() ? "" : ".") + p;
          YAML::Node a;
          a["name"] = name;
          contract.push_back(Op("drop_index", a));
          return Note(n, "drop_index in contract (DROP INDEX CONCURRENTLY)");
        }
      }
      return Raw(&contract, "contract", n, st.text);
    }
    Raw(&expand, "expand", n, st.text);
  }
};

}  // namespace

std::string PlanNameForMigration(const std::string& path) {
  std::string base = path;
  while (!base.empty() && base.back() == '/') base.pop_back();
  size_t slash = base.rfind('/');
  std::string file = slash == std::string::npos ? base : base.substr(slash + 1);
  if (file == "migration.sql" && slash != std::string::npos) {
    // Prisma: migrations/<timestamp>_<name>/migration.sql, recorded by the directory's name.
    const std::string dir = base.substr(0, slash);
    const size_t s2 = dir.rfind('/');
    file = s2 == std::string::npos ? dir : dir.substr(s2 + 1);
  }
  for (const char* ext : {".down.sql", ".up.sql", ".sql"}) {
    const std::string e = ext;
    if (file.size() > e.size() && file.compare(file.size() - e.size(), e.size(), e) == 0) {
      file.resize(file.size() - e.size());
      break;
    }
  }
  std::string out;
  for (char c : file) {
    const char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += std::isalnum(static_cast<unsigned char>(l)) ? l : '_';
  }
  if (out.size() > 63) out.resize(63);
  return out.empty() ? "imported" : out;
}

ImportResult ImportSql(const std::string& up_sql, const std::string& down_sql, const ImportOptions& options) {
  ImportResult r;
  const SqlParse up = ParseSql(up_sql);
  if (!up.ok()) {
    r.error = options.file + ": " + PositionIn(up_sql, up.error_offset) + ": PostgreSQL cannot parse it: " + up.error;
    return r;
  }
  const SqlParse down = ParseSql(down_sql);
  if (!down.ok()) {
    r.error = "the down file: " + PositionIn(down_sql, down.error_offset) + ": PostgreSQL cannot parse it: " + down.error;
    return r;
  }
  Builder b{up_sql};
  for (const auto& [table, column] : ColumnsAddedBy(up_sql)) b.added.insert(table + "." + column);
  for (const auto& st : up.statements) b.texts.push_back(st.text);
  // UPDATEs that become backfill tasks first (an ADD COLUMN ... NOT NULL is filled by the
  // file's own UPDATE); everything else in the file's order.
  std::vector<bool> converted(up.statements.size(), false);
  for (size_t i = 0; i < up.statements.size(); ++i) {
    if (up.statements[i].kind == "UpdateStmt") converted[i] = b.Update(i + 1, up.statements[i]);
  }
  for (size_t i = 0; i < up.statements.size(); ++i) {
    if (converted[i]) continue;
    if (up.statements[i].kind == "UpdateStmt") {
      b.Raw(&b.expand, "expand", i + 1, up.statements[i].text);
      b.Note(i + 1, "an UPDATE of values the table already has (or a second one of the table) is not "
                    "batched: write it as a backfill task with `where:` selecting the rows to change", true);
      continue;
    }
    b.Statement(i + 1, up.statements[i]);
  }
  for (const auto& st : down.statements) {
    if (st.kind == "TransactionStmt") continue;
    const SqlNode* objects = Field(st.body, "objects");
    if (st.kind == "DropStmt" && StringField(st.body, "removeType") == "OBJECT_INDEX" && objects && objects->size() == 1) {
      std::string name;
      for (const auto& p : Names(Field(BodyOf((*objects)[0]), "items"))) name += (name.empty() ? "" : ".") + p;
      YAML::Node a;
      a["name"] = name;
      b.rollback.push_back(b.Op("drop_index", a));
      continue;
    }
    const SqlNode* cmds = Field(st.body, "cmds");
    if (st.kind == "AlterTableStmt" && cmds && cmds->size() == 1 &&
        StringField(BodyOf((*cmds)[0]), "subtype") == "AT_DropColumn") {
      YAML::Node a;
      a["table"] = Rel(st.body);
      a["column"] = StringField(BodyOf((*cmds)[0]), "name");
      b.rollback.push_back(b.Op("drop_column", a));
      continue;
    }
    YAML::Node s;
    s["sql"] = st.text;
    b.rollback.push_back(s);
  }
  if (!down.statements.empty()) {
    // Rollback runs before contract, when only expand has happened: a down statement about a
    // constraint contract adds would fail there.
    std::string about;
    for (const auto& st : down.statements) {
      for (const auto& name : b.contract_names) {
        if (!name.empty() && st.text.find(name) != std::string::npos) about += (about.empty() ? "" : ", ") + name;
      }
    }
    b.Note(0, "the down file: " + std::to_string(b.rollback.size()) + " rollback step(s), run by `tidectl abort` "
              "before contract" + (about.empty() ? std::string() : "; it undoes " + about + ", which only contract "
                                   "adds: remove those statements"),
           !about.empty());
  }
  if (b.contract.size() > 0 && b.gates.size() == 0) {
    b.Note(0, "contract has steps but nothing proves the data or the deploy is ready: add a gate "
              "(e.g. `- sql: SELECT count(*) FROM app_version WHERE version < 2` with `expect: 0`)", true);
  }

  std::stable_sort(b.notes.begin(), b.notes.end(),
                   [](const ImportNote& x, const ImportNote& y) { return x.statement < y.statement; });
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "plan" << YAML::Value << (options.name.empty() ? PlanNameForMigration(options.file) : options.name);
  out << YAML::Key << "database" << YAML::Value << (options.database.empty() ? "app" : options.database);
  const std::string base = options.file.substr(options.file.rfind('/') == std::string::npos ? 0 : options.file.rfind('/') + 1);
  out << YAML::Key << "description" << YAML::Value << ("imported from " + PlanNameForMigration(options.file));
  if (b.expand.size()) out << YAML::Key << "expand" << YAML::Value << b.expand;
  if (b.backfill.size()) out << YAML::Key << "backfill" << YAML::Value << b.backfill;
  if (b.gates.size()) out << YAML::Key << "gates" << YAML::Value << b.gates;
  if (b.contract.size()) out << YAML::Key << "contract" << YAML::Value << b.contract;
  if (b.rollback.size()) out << YAML::Key << "rollback" << YAML::Value << b.rollback;
  out << YAML::EndMap;
  r.yaml = std::string("# imported by `tidectl import` from ") + base + "\n" + out.c_str() + "\n";
  r.notes = std::move(b.notes);
  return r;
}

}  // namespace tide
