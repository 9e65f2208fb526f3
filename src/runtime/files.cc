#include "runtime/files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "plan/config_parser.h"

namespace tide {

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Io("cannot read " + path + ": " + std::strerror(errno));
  std::string text(max_bytes + 1, '\0');
  in.read(&text[0], static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) return Status::Io("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Io("cannot rename " + tmp + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

Result<Config> LoadConfigFile(const std::string& path) {
  auto text = ReadFile(path, 1 << 20);
  if (!text.ok()) return text.status();
  ConfigParseResult parsed = ParseConfig(*text, path);
  if (!parsed.ok()) return Status::Invalid(FormatDiagnostics(parsed.errors));
  return parsed.config;
}

}  // namespace tide
