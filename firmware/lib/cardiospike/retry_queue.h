// Chunks posted but not yet acknowledged, and the backoff between failed attempts.
//
// A queue entry is a frame range plus the flags of its chunk, not the encoded bytes: the
// samples stay in the SampleRing until the server acknowledges them, and a resend re-encodes
// the same samples from there (with the chunk's age measured anew). Entries are kept in seq
// order, oldest first.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cardiospike {

struct PendingChunk {
  uint32_t seq;
  uint64_t first_sample;
  uint16_t n_frames;
  uint8_t battery_pct;  // as it was when the chunk was cut, so a resend carries the same one
  bool lead_off;
  uint16_t attempts;    // posts so far that got no acknowledgment
};

class RetryQueue {
 public:
  // slots: storage for capacity entries that outlives the queue (no allocation here).
  RetryQueue(PendingChunk* slots, size_t capacity);

  // Append a new chunk (its seq above every queued one). When the queue is full the oldest
  // entry makes room: its frames are the next the ring overwrites anyway. Returns true and
  // fills *dropped when that happened.
  bool push(const PendingChunk& chunk, PendingChunk* dropped);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }
  PendingChunk& at(size_t index) { return slots_[index]; }  // 0 is the oldest
  PendingChunk* find(uint32_t seq);

  // Forget the entry with this seq (acknowledged or refused); false when none had it.
  bool remove(uint32_t seq);
  // Forget every entry below next_seq: the server says it has all of them. Returns how many.
  size_t remove_below(uint32_t next_seq);
  // Forget every entry whose frames start before oldest_frame (the ring overwrote them).
  // Returns how many; their frames are counted in *lost_frames.
  size_t remove_overwritten(uint64_t oldest_frame, uint64_t* lost_frames);

 private:
  void erase(size_t index);

  PendingChunk* slots_;
  size_t capacity_;
  size_t size_;
};

// Exponential backoff with "equal jitter": after the n-th failure in a row the wait is
// min(base * 2^(n-1), max), of which half is fixed and half drawn at random, so that devices
// that lost the link together do not all come back in the same millisecond.
class Backoff {
 public:
  Backoff(uint32_t base_ms, uint32_t max_ms);

  // Count a failure and return how long to wait before the next attempt; random_u32 is a
  // fresh draw from the injected random source.
  uint32_t failure(uint32_t random_u32);
  void reset() { failures_ = 0; }
  uint32_t failures() const { return failures_; }
  // The wait before jitter for the current failure count (0 after a reset).
  uint32_t nominal_ms() const;

 private:
  uint32_t base_ms_;
  uint32_t max_ms_;
  uint32_t failures_;
};

}  // namespace cardiospike
