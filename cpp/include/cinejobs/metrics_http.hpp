// MetricsHttpServer: the smallest HTTP server that answers a Prometheus scrape, for the
// cinejobs-worker binary (the Python worker serves the same text with http.server). HTTP/1.0,
// one connection at a time on one thread, GET or HEAD of /metrics (200), anything else 404; a
// request over 8 KiB or slower than the I/O timeout is dropped. A scrape every few seconds
// needs no more, and a slow or hostile client can hold it for one timeout at most.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace cinejobs {

struct MetricsHttpOptions {
  // An IPv4 address to listen on; "0.0.0.0" is every interface (Prometheus scrapes workers
  // from another machine or container).
  std::string host = "0.0.0.0";
  int port = 9100;  // 0: a free port, read with port()
  // How long one client may take to send its request and read the answer.
  std::chrono::milliseconds io_timeout{2000};
};

class MetricsHttpServer {
 public:
  // Binds and listens at once, so a port in use is known before anything else starts: throws
  // ConfigError naming host:port and the reason. `render` is called for every scrape on the
  // server's thread; an exception it throws answers 500 with its message.
  MetricsHttpServer(MetricsHttpOptions options, std::function<std::string()> render);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // start serves from a thread; calling it again does nothing.
  void start();
  // stop ends the thread (within ~100 ms, or the I/O timeout of a client being answered),
  // joins it and closes the socket. Safe twice and before start.
  void stop() noexcept;
  // port is the port listened on (the one picked for port 0).
  int port() const noexcept { return port_; }
  const std::string& host() const noexcept { return options_.host; }

 private:
  void serve(std::stop_token stop);
  void answer(int client);

  MetricsHttpOptions options_;
  std::function<std::string()> render_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::jthread thread_;
};

}  // namespace cinejobs
