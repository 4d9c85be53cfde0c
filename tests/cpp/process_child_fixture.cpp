// The child process of the process-mode tests: run_child with native handlers that misbehave on
// purpose (spin for ever, segfault, exit, leak memory), so the supervisor's containment is
// tested without Python.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cinejobs/child_process.hpp"
#include "cinejobs/errors.hpp"

using namespace cinejobs;

namespace {

std::vector<std::vector<char>> hoard;  // what "leak" keeps, as a leak would

// first_int reads the first number of a job's args ("[300]" -> 300).
long first_int(const JobContext& ctx) {
  const std::string& args = ctx.job().args;
  return std::strtol(args.c_str() + 1, nullptr, 10);
}

}  // namespace

int main() {
  std::unordered_map<std::string, Handler> handlers;
  handlers["pid"] = [](JobContext&) { return std::to_string(::getpid()); };
  handlers["spin"] = [](JobContext&) -> std::string {
    volatile unsigned long n = 0;
    for (;;) n = n + 1;  // ignores its token: only a kill ends it
  };
  handlers["segv"] = [](JobContext&) -> std::string {
    ::raise(SIGSEGV);
    return "null";
  };
  handlers["exit"] = [](JobContext& ctx) -> std::string {
    std::_Exit(static_cast<int>(first_int(ctx)));
  };
  handlers["leak"] = [](JobContext& ctx) {
    std::vector<char> block(static_cast<std::size_t>(first_int(ctx)) << 20);
    std::memset(block.data(), 1, block.size());
    hoard.push_back(std::move(block));
    return std::to_string(::getpid());
  };
  handlers["fail"] = [](JobContext&) -> std::string {
    throw HandlerError("ValueError", "bad input", "Traceback: fail()");
  };
  handlers["progress_until_stopped"] = [](JobContext& ctx) -> std::string {
    for (int i = 0;; ++i) {
      ctx.progress(0.5, "waiting", std::to_string(i));  // throws once the token is set
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  try {
    run_child(handlers, ChildOptions::from_environment());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "process_child_fixture: %s\n", e.what());
    return 3;
  }
  return 0;
}
