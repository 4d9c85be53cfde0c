#include "cinejobs/metrics_http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "cinejobs/errors.hpp"
#include "cinejobs/metrics.hpp"

namespace cinejobs {
namespace {

constexpr std::size_t kMaxRequest = 8192;

// Fd closes a socket it owns.
class Fd {
 public:
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

void set_timeout(int fd, int option, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, option, &tv, sizeof tv);
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away or timed out: nothing more to do for it
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string response(std::string_view status, std::string_view content_type,
                     const std::string& body, bool with_body) {
  std::string out;
  out.reserve(body.size() + 160);
  out.append("HTTP/1.0 ").append(status).append("\r\nContent-Type: ").append(content_type);
  out.append("\r\nContent-Length: ").append(std::to_string(body.size()));
  out.append("\r\nConnection: close\r\n\r\n");
  if (with_body) out.append(body);
  return out;
}

}  // namespace

MetricsHttpServer::MetricsHttpServer(MetricsHttpOptions options,
                                     std::function<std::string()> render)
    : options_(std::move(options)), render_(std::move(render)) {
  const std::string where = options_.host + ":" + std::to_string(options_.port);
  if (options_.port < 0 || options_.port > 65535) {
    throw ConfigError("metrics port " + std::to_string(options_.port) + " is not a TCP port");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(options_.port));
  if (::inet_pton(AF_INET, options_.host.c_str(), &addr.sin_addr) != 1) {
    throw ConfigError("cannot serve metrics on " + where +
                      ": the host must be an IPv4 address, e.g. 0.0.0.0 or 127.0.0.1");
  }
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    throw ConfigError("cannot serve metrics on " + where + " (" + std::strerror(errno) + ")");
  }
  const int on = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd.get(), 16) != 0) {
    throw ConfigError("cannot serve metrics on " + where + " (" + std::strerror(errno) +
                      "): is another worker using it? Choose another --metrics-port");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  listen_fd_ = fd.release();
}

MetricsHttpServer::~MetricsHttpServer() { stop(); }

void MetricsHttpServer::start() {
  if (thread_.joinable() || listen_fd_ < 0) return;
  thread_ = std::jthread([this](std::stop_token stop) { serve(stop); });
}

void MetricsHttpServer::stop() noexcept {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
}

void MetricsHttpServer::serve(std::stop_token stop) {
  while (!stop.stop_requested()) {
    // A short poll rather than a blocking accept, so a stop is seen within 100 ms.
    pollfd p{listen_fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, 100);
    if (ready <= 0) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    Fd owned(client);
    set_timeout(client, SO_RCVTIMEO, options_.io_timeout);
    set_timeout(client, SO_SNDTIMEO, options_.io_timeout);
    try {
      answer(client);
    } catch (...) {
      // Out of memory answering one client: drop it, keep serving.
    }
  }
}

void MetricsHttpServer::answer(int client) {
  std::string request;
  char buf[1024];
  while (request.find("\r\n\r\n") == std::string::npos &&
         request.find("\n\n") == std::string::npos) {
    if (request.size() > kMaxRequest) return;
    const ssize_t n = ::recv(client, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // closed, or slower than the timeout
    request.append(buf, static_cast<std::size_t>(n));
  }
  // "GET /metrics HTTP/1.1": the method, then the path up to a query string.
  const std::string_view line(request.data(), request.find_first_of("\r\n"));
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  const std::string_view method = line.substr(0, sp1);
  std::string_view path =
      sp1 == std::string_view::npos ? std::string_view{} : line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    send_all(client, response("405 Method Not Allowed", "text/plain; charset=utf-8",
                              "only GET /metrics\n", true));
    return;
  }
  if (path != "/metrics") {
    send_all(client, response("404 Not Found", "text/plain; charset=utf-8",
                              "not found: try /metrics\n", !head));
    return;
  }
  std::string body;
  try {
    body = render_();
  } catch (const std::exception& e) {
    send_all(client,
             response("500 Internal Server Error", "text/plain; charset=utf-8",
                      std::string("rendering the metrics failed: ") + e.what() + "\n", !head));
    return;
  }
  send_all(client, response("200 OK", kMetricsContentType, body, !head));
}

}  // namespace cinejobs
