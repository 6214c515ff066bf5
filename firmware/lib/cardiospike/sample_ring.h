// A fixed-capacity ring of sample frames between the sampling interrupt and the uploader.
//
// One producer (the timer ISR) pushes frames; one consumer (the main loop) copies ranges out by
// their absolute frame index since boot. The producer never waits: when the ring is full it
// overwrites the oldest frame, so a link that stays down longer than the ring holds loses the
// oldest samples, and the server shows them as a gap (first_sample says where each chunk
// starts). The ring is the only copy of samples not yet acknowledged: the retry queue keeps
// frame ranges, not bytes, and re-encodes a chunk from here when it resends it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace cardiospike {

class SampleRing {
 public:
  // storage: capacity_frames x n_channels int16 values that outlive the ring (a static array
  // on the device: nothing is allocated here).
  SampleRing(int16_t* storage, uint32_t capacity_frames, uint8_t n_channels);

  // --- producer (one context only, e.g. the sampling ISR) ---
  void push(const int16_t* frame);  // n_channels values
  void push(int16_t sample);        // one-channel rings

  // --- consumer (one context only, e.g. loop()) ---
  // Frames pushed since boot. The producer counts in 32 bits (atomic on a 32-bit MCU); this
  // widens the count, so the consumer must call it at least once per 2^32 frames (198 days at
  // 250 Hz): the uploader does so on every poll.
  uint64_t frames_written();
  // The oldest frame index that can still be copied. The ring holds capacity_frames - 1 frames
  // that can be read: the slot the producer writes next is never read.
  uint64_t oldest_available();
  // Copy frames [first, first + n_frames) into out (n_frames x n_channels values). False when
  // part of the range is not written yet or was overwritten (also during the copy itself).
  bool copy(uint64_t first, uint32_t n_frames, int16_t* out);

  // Pretend frames_written frames were pushed already (their values read as whatever the
  // storage holds). Only before the first push; the tests use it to cross the 32-bit wrap of
  // the producer's count without pushing four billion frames.
  void restart_at(uint64_t frames_written);

  uint32_t capacity_frames() const { return capacity_frames_; }
  uint8_t n_channels() const { return n_channels_; }

 private:
  bool still_safe(uint64_t first);

  int16_t* storage_;
  uint32_t capacity_frames_;
  uint8_t n_channels_;
  // Producer state. write_slot_ == written_ mod capacity, kept separately so the ISR never
  // divides, and so the slot stays right when the 32-bit count wraps.
  uint32_t write_slot_;
  std::atomic<uint32_t> written_;
  // Consumer state: the widened count at the last frames_written().
  uint64_t written_wide_;
};

}  // namespace cardiospike
