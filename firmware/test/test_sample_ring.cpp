// The ring keeps the newest frames, refuses ranges it no longer holds, and counts past 2^32.

#include "check.h"
#include "sample_ring.h"

using namespace cardiospike;

TEST(ring_returns_frames_in_order_across_the_wrap) {
  int16_t storage[10];
  SampleRing ring(storage, 10, 1);
  for (int i = 0; i < 25; ++i) ring.push(static_cast<int16_t>(i));
  CHECK_EQ(ring.frames_written(), 25);
  int16_t out[9];
  CHECK(ring.copy(16, 9, out));  // frames 16-24: the slots wrapped twice to get here
  for (int i = 0; i < 9; ++i) CHECK_EQ(out[i], 16 + i);
}

TEST(full_ring_overwrites_the_oldest_frames) {
  int16_t storage[10];
  SampleRing ring(storage, 10, 1);
  for (int i = 0; i < 9; ++i) ring.push(static_cast<int16_t>(i));
  CHECK_EQ(ring.oldest_available(), 0);
  int16_t out[10];
  CHECK(ring.copy(0, 9, out));
  ring.push(static_cast<int16_t>(9));
  // the slot of frame 0 is the next one written, so frame 0 counts as gone already
  CHECK_EQ(ring.oldest_available(), 1);
  CHECK(!ring.copy(0, 1, out));
  for (int i = 10; i < 14; ++i) ring.push(static_cast<int16_t>(i));
  CHECK_EQ(ring.oldest_available(), 5);
  CHECK(!ring.copy(4, 3, out));  // starts one frame too early
  CHECK(ring.copy(5, 9, out));
  for (int i = 0; i < 9; ++i) CHECK_EQ(out[i], 5 + i);
}

TEST(ring_refuses_frames_not_written_yet) {
  int16_t storage[10];
  SampleRing ring(storage, 10, 1);
  for (int i = 0; i < 5; ++i) ring.push(static_cast<int16_t>(i));
  int16_t out[10];
  CHECK(ring.copy(2, 3, out));
  CHECK(!ring.copy(2, 4, out));
  CHECK(!ring.copy(5, 1, out));
  CHECK(ring.copy(5, 0, out));  // an empty range is always there
}

TEST(ring_keeps_channels_of_a_frame_together) {
  int16_t storage[4 * 3];
  SampleRing ring(storage, 4, 3);
  for (int i = 0; i < 6; ++i) {
    const int16_t frame[3] = {static_cast<int16_t>(i), static_cast<int16_t>(100 + i),
                              static_cast<int16_t>(-i)};
    ring.push(frame);
  }
  int16_t out[3 * 3];
  CHECK(ring.copy(3, 3, out));
  for (int i = 0; i < 3; ++i) {
    CHECK_EQ(out[3 * i], 3 + i);
    CHECK_EQ(out[3 * i + 1], 103 + i);
    CHECK_EQ(out[3 * i + 2], -(3 + i));
  }
}

TEST(frame_count_keeps_counting_past_the_32_bit_wrap) {
  int16_t storage[7];
  SampleRing ring(storage, 7, 1);
  const uint64_t start = 0xFFFFFFFFull - 3;
  ring.restart_at(start);
  for (int i = 0; i < 10; ++i) ring.push(static_cast<int16_t>(i));
  CHECK(ring.frames_written() == start + 10);
  CHECK(ring.frames_written() > 0xFFFFFFFFull);
  int16_t out[6];
  CHECK(ring.copy(start + 4, 6, out));  // frames on both sides of the wrap
  for (int i = 0; i < 6; ++i) CHECK_EQ(out[i], 4 + i);
}

TEST(ring_of_the_sketch_holds_sixty_seconds_at_250_hz) {
  // The sketch's ring: 120 s at 250 Hz in a static array.
  static int16_t storage[120 * 250];
  SampleRing ring(storage, 120 * 250, 1);
  for (int i = 0; i < 61 * 250; ++i) ring.push(static_cast<int16_t>(i));
  static int16_t out[60 * 250];
  CHECK(ring.copy(250, 60 * 250, out));
  CHECK_EQ(out[0], 250);
  CHECK_EQ(out[60 * 250 - 1], 61 * 250 - 1);
}
