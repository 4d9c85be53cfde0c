// Child process: the side of process mode that runs handlers (process_pool.hpp is the
// supervisor's). A child reads jobs from its supervisor over one socket, runs up to
// `concurrency` of them at once on its own threads, and answers with progress reports and
// outcomes. It never touches the broker: a handler that needs it runs in the supervisor.
#pragma once

#include <sys/types.h>

#include <string>
#include <unordered_map>

#include "cinejobs/worker.hpp"

namespace cinejobs {

struct ChildOptions {
  int fd = 3;            // the socket to the supervisor
  int concurrency = 1;   // jobs run at once
  pid_t supervisor = 0;  // the child exits when this process is gone (0: not checked)

  // from_environment reads CINEJOBS_CHILD_FD, CINEJOBS_CHILD_CONCURRENCY and
  // CINEJOBS_CHILD_SUPERVISOR, which the supervisor sets; throws ConfigError when they are
  // missing (the process was not started by a supervisor).
  static ChildOptions from_environment();
};

// run_child says it is ready, then serves jobs until the supervisor closes the socket, and
// returns once the jobs it was running have ended. The child is killed with the supervisor
// (PR_SET_PDEATHSIG), so it never outlives it.
void run_child(const std::unordered_map<std::string, Handler>& handlers,
               const ChildOptions& options);

}  // namespace cinejobs
