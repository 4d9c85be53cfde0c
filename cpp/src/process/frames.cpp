#include "process/frames.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "cinejobs/errors.hpp"

namespace cinejobs::detail {
namespace {

void put_u32(std::string& out, std::size_t value) {
  const auto v = static_cast<std::uint32_t>(value);
  out.push_back(static_cast<char>((v >> 24) & 0xFF));
  out.push_back(static_cast<char>((v >> 16) & 0xFF));
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
  out.push_back(static_cast<char>(v & 0xFF));
}

std::size_t get_u32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::size_t{u[0]} << 24) | (std::size_t{u[1]} << 16) | (std::size_t{u[2]} << 8) |
         std::size_t{u[3]};
}

}  // namespace

std::string encode_frame(FrameType type, std::initializer_list<std::string_view> fields) {
  std::size_t body = 1;
  for (std::string_view f : fields) body += 4 + f.size();
  if (body > kMaxFrame) throw InvalidPayload("a message to or from a child process is too large");
  std::string out;
  out.reserve(4 + body);
  put_u32(out, body);
  out.push_back(static_cast<char>(type));
  for (std::string_view f : fields) {
    put_u32(out, f.size());
    out.append(f);
  }
  return out;
}

void FrameReader::feed(const char* data, std::size_t size) {
  if (pos_ > 0 && pos_ == buffer_.size()) {
    buffer_.clear();
    pos_ = 0;
  }
  buffer_.append(data, size);
}

std::optional<Frame> FrameReader::next() {
  const std::size_t available = buffer_.size() - pos_;
  if (available < 4) return std::nullopt;
  const std::size_t body = get_u32(buffer_.data() + pos_);
  if (body < 1 || body > kMaxFrame) {
    throw InvalidPayload("corrupt message from a child process (frame length " +
                         std::to_string(body) + ")");
  }
  if (available < 4 + body) return std::nullopt;
  const char* p = buffer_.data() + pos_ + 4;
  const char* end = p + body;
  Frame frame;
  frame.type = static_cast<FrameType>(static_cast<unsigned char>(*p++));
  while (p < end) {
    if (end - p < 4) throw InvalidPayload("corrupt message from a child process (field header)");
    const std::size_t n = get_u32(p);
    p += 4;
    if (static_cast<std::size_t>(end - p) < n) {
      throw InvalidPayload("corrupt message from a child process (field past its frame)");
    }
    frame.fields.emplace_back(p, n);
    p += n;
  }
  pos_ += 4 + body;
  if (pos_ == buffer_.size()) {
    buffer_.clear();
    pos_ = 0;
  } else if (pos_ > (1u << 20)) {
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  return frame;
}

bool send_all(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() { reset(); }

int UniqueFd::release() noexcept {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::reset() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace cinejobs::detail
