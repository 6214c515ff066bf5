#include "sample_ring.h"

namespace cardiospike {

SampleRing::SampleRing(int16_t* storage, uint32_t capacity_frames, uint8_t n_channels)
    : storage_(storage),
      capacity_frames_(capacity_frames),
      n_channels_(n_channels),
      write_slot_(0),
      written_(0),
      written_wide_(0) {}

void SampleRing::restart_at(uint64_t frames_written) {
  write_slot_ = static_cast<uint32_t>(frames_written % capacity_frames_);
  written_.store(static_cast<uint32_t>(frames_written), std::memory_order_release);
  written_wide_ = frames_written;
}

void SampleRing::push(const int16_t* frame) {
  int16_t* slot = storage_ + static_cast<size_t>(write_slot_) * n_channels_;
  for (uint8_t c = 0; c < n_channels_; ++c) slot[c] = frame[c];
  write_slot_ = (write_slot_ + 1 == capacity_frames_) ? 0 : write_slot_ + 1;
  // release: a consumer that sees the new count also sees the frame's values
  written_.store(written_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

void SampleRing::push(int16_t sample) { push(&sample); }

uint64_t SampleRing::frames_written() {
  const uint32_t now = written_.load(std::memory_order_acquire);
  // unsigned subtraction counts across the 32-bit wrap
  written_wide_ += static_cast<uint32_t>(now - static_cast<uint32_t>(written_wide_));
  return written_wide_;
}

uint64_t SampleRing::oldest_available() {
  // One frame short of the capacity: see still_safe().
  const uint64_t written = frames_written();
  return written >= capacity_frames_ ? written - capacity_frames_ + 1 : 0;
}

bool SampleRing::copy(uint64_t first, uint32_t n_frames, int16_t* out) {
  const uint64_t written = frames_written();
  if (first + n_frames > written || !still_safe(first)) return false;
  uint32_t slot = static_cast<uint32_t>(first % capacity_frames_);
  for (uint32_t i = 0; i < n_frames; ++i) {
    const int16_t* frame = storage_ + static_cast<size_t>(slot) * n_channels_;
    for (uint8_t c = 0; c < n_channels_; ++c) *out++ = frame[c];
    slot = (slot + 1 == capacity_frames_) ? 0 : slot + 1;
  }
  // If the producer came round to frame `first` while we copied, part of the copy may hold
  // newer samples: refuse it rather than send a chunk whose samples are not what it says.
  return still_safe(first);
}

bool SampleRing::still_safe(uint64_t first) {
  // The slot of frame `first` is the next one written once capacity frames follow it; the
  // producer writes the slot before it bumps the count, so that slot counts as gone already.
  return frames_written() - first < capacity_frames_;
}

}  // namespace cardiospike
