#include "util/json_parse.h"

#include <cctype>

namespace tide {
namespace {

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}

  std::optional<FlatJson> Object() {
    FlatJson out;
    if (!Eat('{')) return std::nullopt;
    if (Eat('}')) return out;
    do {
      auto key = String();
      if (!key || !Eat(':')) return std::nullopt;
      auto value = Value();
      if (!value) return std::nullopt;
      out[*key] = *value;
    } while (Eat(','));
    if (!Eat('}')) return std::nullopt;
    Skip();
    if (i_ != s_.size()) return std::nullopt;
    return out;
  }

 private:
  void Skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool Eat(char c) {
    Skip();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  std::optional<std::string> Value() {
    Skip();
    if (i_ < s_.size() && s_[i_] == '"') return String();
    if (i_ < s_.size() && (s_[i_] == '[' || s_[i_] == '{')) return Nested();
    size_t start = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' ||
                              s_[i_] == '+' || s_[i_] == '.')) {
      ++i_;
    }
    if (start == i_) return std::nullopt;
    return s_.substr(start, i_ - start);
  }
  // An array or object, kept as its JSON text.
  std::optional<std::string> Nested() {
    const size_t start = i_;
    int depth = 0;
    bool in_string = false;
    for (; i_ < s_.size(); ++i_) {
      const char c = s_[i_];
      if (in_string) {
        if (c == '\\') ++i_;
        else if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if ((c == ']' || c == '}') && --depth == 0) {
        ++i_;
        return s_.substr(start, i_ - start);
      }
    }
    return std::nullopt;
  }
  std::optional<std::string> String() {
    if (!Eat('"')) return std::nullopt;
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) return std::nullopt;
      char e = s_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'u': {
          if (i_ + 4 > s_.size()) return std::nullopt;
          unsigned code = std::stoul(s_.substr(i_, 4), nullptr, 16);
          i_ += 4;
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
          } else {
            out += static_cast<char>(0xE0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
          }
          break;
        }
        default: out += e;
      }
    }
    if (i_ >= s_.size()) return std::nullopt;
    ++i_;
    return out;
  }

  const std::string& s_;
  size_t i_ = 0;
};

}  // namespace

std::optional<FlatJson> ParseFlatJson(const std::string& line) {
  try {
    return Reader(line).Object();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace tide
