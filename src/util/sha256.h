// SHA-256 through OpenSSL's libcrypto.
#pragma once

#include <string>

namespace tide {

// Lower-case hex digest of `data`.
std::string Sha256Hex(const std::string& data);

}  // namespace tide
