// CommandRunner on POSIX: /bin/sh -c COMMAND in a child process, its stdout and stderr read
// through a pipe (the last 4 KiB kept), waited for in the calling thread.
#pragma once

#include "tide/ports.h"

namespace tide {

class ShellCommandRunner : public CommandRunner {
 public:
  Result<CommandResult> Run(const std::string& command,
                            const std::vector<std::pair<std::string, std::string>>& env) override;
};

}  // namespace tide
