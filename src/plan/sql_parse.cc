#include "plan/sql_parse.h"

#include <pg_query.h>

#include <algorithm>
#include <cctype>

namespace tide {
namespace {
constexpr int kMaxTreeDepth = 2000;
}  // namespace

SqlParse ParseSql(const std::string& sql) {
  SqlParse out;
  PgQueryParseResult r = pg_query_parse(sql.c_str());
  if (r.error) {
    out.error = r.error->message ? r.error->message : "syntax error";
    out.error_offset = r.error->cursorpos > 0 ? static_cast<size_t>(r.error->cursorpos - 1) : 0;
    pg_query_free_parse_result(r);
    return out;
  }
  // A tree nested deeper than any migration needs (1 + 1 + ... thousands of times) is refused
  // before it is read: reading and walking it recurse.
  const char* json = r.parse_tree ? r.parse_tree : "{}";
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (const char* c = json; *c; ++c) {
    if (in_string) {
      if (*c == '\\' && c[1]) ++c;
      else if (*c == '"') in_string = false;
    } else if (*c == '"') {
      in_string = true;
    } else if (*c == '{' || *c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (*c == '}' || *c == ']') {
      --depth;
    }
  }
  if (deepest > kMaxTreeDepth) {
    pg_query_free_parse_result(r);
    out.error = "the SQL nests " + std::to_string(deepest) + " levels deep, more than tide reads (" +
                std::to_string(kMaxTreeDepth) + "); split it or simplify it";
    return out;
  }
  SqlNode tree = SqlNode::parse(json, nullptr, false);
  pg_query_free_parse_result(r);
  if (tree.is_discarded()) {
    out.error = "the parser's output could not be read";
    return out;
  }
  const SqlNode* stmts = Field(tree, "stmts");
  if (!stmts || !stmts->is_array()) return out;
  for (const SqlNode& raw : *stmts) {
    SqlStatement s;
    size_t begin = 0, len = std::string::npos;
    if (const SqlNode* at = Field(raw, "stmt_location")) begin = at->get<size_t>();
    if (const SqlNode* n = Field(raw, "stmt_len")) len = n->get<size_t>();
    if (begin > sql.size()) begin = sql.size();
    std::string text = sql.substr(begin, len);
    // Leading blanks and comments (a migration file's "-- AlterTable") are not the statement.
    size_t lead = 0;
    for (;;) {
      while (lead < text.size() && std::isspace(static_cast<unsigned char>(text[lead]))) ++lead;
      if (text.compare(lead, 2, "--") == 0) {
        const size_t nl = text.find('\n', lead);
        lead = nl == std::string::npos ? text.size() : nl + 1;
      } else if (text.compare(lead, 2, "/*") == 0) {
        const size_t close = text.find("*/", lead + 2);
        lead = close == std::string::npos ? text.size() : close + 2;
      } else {
        break;
      }
    }
    size_t end = text.size();
    while (end > lead && (std::isspace(static_cast<unsigned char>(text[end - 1])) || text[end - 1] == ';')) --end;
    s.text = text.substr(lead, end - lead);
    s.offset = begin + lead;
    if (const SqlNode* stmt = Field(raw, "stmt")) {
      s.kind = KindOf(*stmt);
      s.body = BodyOf(*stmt);
    }
    out.statements.push_back(std::move(s));
  }
  return out;
}

std::string PositionIn(const std::string& text, size_t offset) {
  int line = 1, column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++column;  // a character, not a UTF-8 continuation byte
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

const SqlNode* Field(const SqlNode& node, const char* key) {
  if (!node.is_object()) return nullptr;
  auto it = node.find(key);
  return it == node.end() ? nullptr : &*it;
}

std::string StringField(const SqlNode& node, const char* key) {
  const SqlNode* f = Field(node, key);
  return f && f->is_string() ? f->get<std::string>() : "";
}

bool BoolField(const SqlNode& node, const char* key) {
  const SqlNode* f = Field(node, key);
  return f && f->is_boolean() && f->get<bool>();
}

std::string KindOf(const SqlNode& node) {
  return node.is_object() && node.size() == 1 ? node.begin().key() : "";
}

const SqlNode& BodyOf(const SqlNode& node) {
  static const SqlNode empty = SqlNode::object();
  return node.is_object() && node.size() == 1 ? node.begin().value() : empty;
}

std::vector<std::string> Names(const SqlNode* list) {
  std::vector<std::string> out;
  if (!list || !list->is_array()) return out;
  for (const SqlNode& n : *list) {
    if (KindOf(n) == "String") out.push_back(StringField(BodyOf(n), "sval"));
  }
  return out;
}

std::string LastName(const SqlNode* list) {
  const auto names = Names(list);
  if (names.empty()) return "";
  std::string s = names.back();
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string RelationName(const SqlNode* range_var) {
  if (!range_var) return "";
  const SqlNode& r = KindOf(*range_var) == "RangeVar" ? BodyOf(*range_var) : *range_var;
  const std::string schema = StringField(r, "schemaname");
  return (schema.empty() ? "" : schema + ".") + StringField(r, "relname");
}

void Walk(const SqlNode& node, const std::function<void(const std::string&, const SqlNode&)>& visit) {
  if (node.is_array()) {
    for (const SqlNode& n : node) Walk(n, visit);
    return;
  }
  if (!node.is_object()) return;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // A node is a one-key object whose key starts with an upper-case letter.
    if (node.size() == 1 && !it.key().empty() && std::isupper(static_cast<unsigned char>(it.key()[0]))) {
      visit(it.key(), it.value());
    }
    Walk(it.value(), visit);
  }
}

}  // namespace tide
