#include "cinejobs/batch_sinks.hpp"

namespace cinejobs {
namespace {

class NullSink final : public BatchSink {
 public:
  std::vector<ItemResult> write(std::span<const std::string>) override { return {}; }
  std::string describe() const override { return "null sink"; }
};

}  // namespace

std::shared_ptr<BatchSink> make_null_sink() { return std::make_shared<NullSink>(); }

}  // namespace cinejobs
