// DelegatingBroker: a Broker that forwards every call to another, for tests that step into one
// operation (hold an ack until something else has happened, fail a call) and so make a race
// happen every time instead of once in a while.
#pragma once

#include <memory>
#include <utility>

#include "cinejobs/broker.hpp"

namespace cinejobs::test {

class DelegatingBroker : public Broker {
 public:
  explicit DelegatingBroker(std::shared_ptr<Broker> inner) : inner_(std::move(inner)) {}

  std::string_view kind() const noexcept override { return inner_->kind(); }
  const std::string& url() const noexcept override { return inner_->url(); }
  EnqueueResult enqueue(const Job& job) override { return inner_->enqueue(job); }
  std::vector<EnqueueResult> enqueue_many(std::span<const Job> jobs) override {
    return inner_->enqueue_many(jobs);
  }
  std::vector<Job> reserve(const ReserveParams& params) override { return inner_->reserve(params); }
  std::size_t ack(std::span<const Ack> acks) override { return inner_->ack(acks); }
  std::size_t fail(std::span<const Fail> fails) override { return inner_->fail(fails); }
  std::size_t release(std::span<const LeaseRef> leases) override { return inner_->release(leases); }
  std::size_t snooze(std::span<const Snooze> snoozes) override { return inner_->snooze(snoozes); }
  std::vector<ExtendResult> extend(std::span<const LeaseRef> leases,
                                   std::chrono::milliseconds lease) override {
    return inner_->extend(leases, lease);
  }
  bool set_progress(const LeaseRef& lease, const Progress& progress) override {
    return inner_->set_progress(lease, progress);
  }
  JobState cancel(const std::string& id) override { return inner_->cancel(id); }
  std::optional<Job> get(const std::string& id) override { return inner_->get(id); }
  std::vector<Job> list(const ListParams& params) override { return inner_->list(params); }
  std::vector<QueueCount> counts() override { return inner_->counts(); }
  RecoverReport recover_expired() override { return inner_->recover_expired(); }
  std::size_t prune_finished() override { return inner_->prune_finished(); }
  std::size_t purge(std::string_view queue) override { return inner_->purge(queue); }
  TickResult enqueue_tick(const TickEnqueue& tick) override { return inner_->enqueue_tick(tick); }
  std::optional<ScheduleState> schedule_state(const std::string& name) override {
    return inner_->schedule_state(name);
  }
  std::vector<ScheduleState> schedule_states() override { return inner_->schedule_states(); }
  std::vector<TickRecord> schedule_history(const std::string& name, std::size_t limit) override {
    return inner_->schedule_history(name, limit);
  }
  std::size_t prune_schedule_history(EpochMs before) override {
    return inner_->prune_schedule_history(before);
  }
  void wait_for_jobs(std::span<const std::string> queues, std::chrono::milliseconds max_wait,
                     std::stop_token stop) override {
    inner_->wait_for_jobs(queues, max_wait, stop);
  }
  void wait_for_update(const std::string& id, std::chrono::milliseconds max_wait) override {
    inner_->wait_for_update(id, max_wait);
  }

 protected:
  std::shared_ptr<Broker> inner_;
};

}  // namespace cinejobs::test
