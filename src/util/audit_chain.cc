#include "util/audit_chain.h"

#include <cstring>

#include "util/sha256.h"

namespace tide {

namespace {
const char* kHashKey = ",\"hash\":\"";
}  // namespace

std::string AuditLineHash(const std::string& line) {
  const size_t h = line.rfind(kHashKey);
  if (h == std::string::npos) return "";
  return line.substr(h + std::strlen(kHashKey), 64);
}

Result<AuditLink> ParseAuditLink(const std::string& line) {
  const std::string seq_key = "{\"seq\":";
  if (line.compare(0, seq_key.size(), seq_key) != 0) {
    return Status::Invalid("it does not begin with {\"seq\":");
  }
  AuditLink link;
  size_t i = seq_key.size();
  for (; i < line.size() && i - seq_key.size() < 18 && line[i] >= '0' && line[i] <= '9'; ++i) {
    link.seq = link.seq * 10 + (line[i] - '0');
  }
  if (i == seq_key.size() || i >= line.size() || line[i] != ',' || link.seq < 1) {
    return Status::Invalid("its seq is not a number from 1 up");
  }
  const size_t at = line.rfind(kHashKey);
  const size_t hash_at = at + std::strlen(kHashKey);
  if (at == std::string::npos || line.size() != hash_at + 64 + 2 ||
      line.compare(hash_at + 64, 2, "\"}") != 0) {
    return Status::Invalid("it does not end with its hash (was it cut short?)");
  }
  link.hash = line.substr(hash_at, 64);
  for (char c : link.hash) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return Status::Invalid("its hash is not 64 hex digits");
    }
  }
  return link;
}

std::string FormatAuditLine(int64_t seq, const std::string& ts, const AuditEvent& e,
                            const std::string& prev) {
  JsonObject o;
  o.Int("seq", seq).Str("ts", ts).Str("event", e.event).Str("plan", e.plan).Str("phase", e.phase);
  if (!e.actor.empty()) o.Str("actor", e.actor);
  for (const auto& [k, v] : e.details.fields()) {
    if (k != "prev" && k != "hash") o.Raw(k, v);
  }
  o.Str("prev", prev);
  std::string body = o.ToString();
  body.pop_back();  // the closing brace: the hash covers everything before it
  return body + kHashKey + Sha256Hex(body) + "\"}";
}

ChainCheck VerifyAuditChain(const std::vector<std::string>& lines, const std::string& prev) {
  ChainCheck c;
  std::string expected_prev = prev;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    c.lines = i + 1;
    const size_t at = line.rfind(kHashKey);
    const size_t hash_len = 64;
    if (at == std::string::npos || line.size() != at + std::strlen(kHashKey) + hash_len + 2) {
      c.broken_line = i + 1;
      c.reason = "the line has no hash";
      return c;
    }
    const std::string body = line.substr(0, at);
    const std::string hash = line.substr(at + std::strlen(kHashKey), hash_len);
    if (Sha256Hex(body) != hash) {
      c.broken_line = i + 1;
      c.reason = "the line was changed after it was written (its hash does not match)";
      return c;
    }
    const size_t p = body.rfind(",\"prev\":\"");
    const std::string line_prev = p == std::string::npos ? "?" : body.substr(p + 9, body.size() - p - 10);
    if (!(i == 0 && expected_prev.empty()) && line_prev != expected_prev) {
      c.broken_line = i + 1;
      c.reason = i == 0 ? "the first line does not follow the previous file"
                        : "a line before it is missing, added or reordered (it does not link to "
                          "the line before)";
      return c;
    }
    expected_prev = hash;
  }
  c.last_hash = expected_prev;
  return c;
}

}  // namespace tide
