// Frames: the messages a supervisor and its child processes exchange over a socketpair. A frame
// is a 4-byte big-endian length, a 1-byte type and fields, each a 4-byte big-endian length and
// its bytes: no escaping, any bytes allowed, and nothing to parse but lengths (the job itself
// travels as its wire JSON). A length past kMaxFrame means the stream is corrupt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cinejobs::detail {

enum class FrameType : std::uint8_t {
  kRun = 1,       // supervisor -> child: [job wire JSON]
  kStop = 2,      // supervisor -> child: [job id, stop reason number]
  kReady = 3,     // child -> supervisor: [pid], once the app is imported
  kProgress = 4,  // child -> supervisor: [job id, fraction, step, message]
  kDone = 5,      // child -> supervisor: [job id, "ok", result] or [job id, "error", type,
                  //  message, traceback, retry_at ("" when none), FailureAction number]
};

inline constexpr std::size_t kMaxFrame = std::size_t{1} << 30;

struct Frame {
  FrameType type{};
  std::vector<std::string> fields;
};

std::string encode_frame(FrameType type, std::initializer_list<std::string_view> fields);

// FrameReader collects bytes as they arrive and hands out whole frames.
class FrameReader {
 public:
  void feed(const char* data, std::size_t size);
  // next returns the next whole frame, or nothing until more bytes arrive. Throws
  // InvalidPayload when the stream cannot be frames (a length too large, a field past its frame).
  std::optional<Frame> next();

 private:
  std::string buffer_;
  std::size_t pos_ = 0;
};

// send_all writes all of `data` to a socket, retrying on EINTR and short writes; false once the
// peer is gone. Never raises SIGPIPE.
bool send_all(int fd, std::string_view data) noexcept;

// UniqueFd owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const noexcept { return fd_; }
  int release() noexcept;
  void reset() noexcept;

 private:
  int fd_ = -1;
};

}  // namespace cinejobs::detail
