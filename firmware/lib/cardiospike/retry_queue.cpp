#include "retry_queue.h"

namespace cardiospike {

RetryQueue::RetryQueue(PendingChunk* slots, size_t capacity)
    : slots_(slots), capacity_(capacity), size_(0) {}

bool RetryQueue::push(const PendingChunk& chunk, PendingChunk* dropped) {
  bool made_room = false;
  if (size_ == capacity_) {
    if (dropped) *dropped = slots_[0];
    erase(0);
    made_room = true;
  }
  slots_[size_++] = chunk;
  return made_room;
}

PendingChunk* RetryQueue::find(uint32_t seq) {
  for (size_t i = 0; i < size_; ++i) {
    if (slots_[i].seq == seq) return &slots_[i];
  }
  return nullptr;
}

bool RetryQueue::remove(uint32_t seq) {
  for (size_t i = 0; i < size_; ++i) {
    if (slots_[i].seq == seq) {
      erase(i);
      return true;
    }
  }
  return false;
}

size_t RetryQueue::remove_below(uint32_t next_seq) {
  size_t removed = 0;
  // entries are in seq order, so the ones below next_seq are at the front
  while (size_ > 0 && slots_[0].seq < next_seq) {
    erase(0);
    ++removed;
  }
  return removed;
}

size_t RetryQueue::remove_overwritten(uint64_t oldest_frame, uint64_t* lost_frames) {
  size_t removed = 0;
  while (size_ > 0 && slots_[0].first_sample < oldest_frame) {
    if (lost_frames) *lost_frames += slots_[0].n_frames;
    erase(0);
    ++removed;
  }
  return removed;
}

void RetryQueue::erase(size_t index) {
  // A plain shift: the queue holds a few hundred entries at most and is touched once a poll.
  for (size_t i = index + 1; i < size_; ++i) slots_[i - 1] = slots_[i];
  --size_;
}

Backoff::Backoff(uint32_t base_ms, uint32_t max_ms)
    : base_ms_(base_ms), max_ms_(max_ms), failures_(0) {}

uint32_t Backoff::nominal_ms() const {
  if (failures_ == 0) return 0;
  uint32_t wait_ms = base_ms_;
  for (uint32_t i = 1; i < failures_; ++i) {
    // stop at the cap before the doubling could pass it (or overflow)
    if (wait_ms > max_ms_ / 2) return max_ms_;
    wait_ms *= 2;
  }
  return wait_ms < max_ms_ ? wait_ms : max_ms_;
}

uint32_t Backoff::failure(uint32_t random_u32) {
  if (failures_ < 0xFFFFu) ++failures_;
  const uint32_t nominal = nominal_ms();
  const uint32_t half = nominal / 2;
  return nominal - half + random_u32 % (half + 1);
}

}  // namespace cardiospike
