// Child processes for end-to-end tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace tide::testing {

class Process {
 public:
  // Starts argv[0] with the arguments; stdout and stderr are appended to `log_path`. `env` holds
  // extra NAME=value settings for the child.
  Process(const std::vector<std::string>& argv, const std::string& log_path,
          const std::vector<std::string>& env = {});
  ~Process();

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int sig);
  // Waits for the exit; returns the exit status, or -1 on timeout (the process is left running).
  int Wait(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

// Runs a command to completion and captures its output.
CommandResult RunCommand(const std::vector<std::string>& argv);

std::string ReadAll(const std::string& path);
void WriteAll(const std::string& path, const std::string& text);

}  // namespace tide::testing
