// The ring keeps the newest frames, refuses ranges it no longer holds (also when the producer
// overtakes a copy while it runs), and counts past 2^32.

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "check.h"
#include "sample_ring.h"

using namespace cardiospike;

namespace {

// On the device the sampling task preempts loop() at every timer tick, also in the middle of
// copy(). A test cannot schedule that between two instructions of the copy, so a page fault
// does: copy() writes into an output buffer whose second page is read-only, and the fault
// handler plays the sampling task (it makes the page writable and pushes frames) before the
// faulting write runs again and the copy goes on.
struct Interruption {
  SampleRing* ring;
  char* page;  // the read-only page of the output buffer
  size_t page_bytes;
  uint32_t frames;  // pushed by the "sampling task"
  int16_t next_value;
  bool fired;
  struct sigaction previous_segv;
  struct sigaction previous_bus;
};

Interruption* interruption = nullptr;

void on_fault(int signal_number, siginfo_t* info, void*) {
  Interruption* in = interruption;
  char* address = static_cast<char*>(info->si_addr);
  if (in == nullptr) {
    struct sigaction default_action;
    std::memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigaction(signal_number, &default_action, nullptr);  // returning faults again, and crashes
    return;
  }
  if (in->fired || address < in->page || address >= in->page + in->page_bytes) {
    // a fault of its own: put back the handler it would have met and let it fault again
    sigaction(signal_number, signal_number == SIGBUS ? &in->previous_bus : &in->previous_segv,
              nullptr);
    return;
  }
  mprotect(in->page, in->page_bytes, PROT_READ | PROT_WRITE);
  for (uint32_t i = 0; i < in->frames; ++i) in->ring->push(in->next_value++);
  in->fired = true;
}

// ring.copy(first, n_frames) in a one-channel ring, with `frames` frames (values from
// next_value on) pushed once the copy has written `copied_before` frames. Returns what
// copy() returned; *out gets what it wrote.
bool copy_interrupted(SampleRing& ring, uint64_t first, uint32_t n_frames, uint32_t copied_before,
                      uint32_t frames, int16_t next_value, std::vector<int16_t>* out) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // the fault must come inside the copy, and each side of it must fit its page
  const bool fits = copied_before < n_frames && copied_before * sizeof(int16_t) <= page &&
                    (n_frames - copied_before) * sizeof(int16_t) <= page;
  CHECK(fits);
  if (!fits) return false;
  void* mapped = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
  CHECK(mapped != MAP_FAILED);
  if (mapped == MAP_FAILED) return false;
  char* base = static_cast<char*>(mapped);
  int16_t* buffer = reinterpret_cast<int16_t*>(base + page) - copied_before;

  Interruption in;
  in.ring = &ring;
  in.page = base + page;
  in.page_bytes = page;
  in.frames = frames;
  in.next_value = next_value;
  in.fired = false;
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_sigaction = on_fault;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  sigaction(SIGSEGV, &action, &in.previous_segv);
  sigaction(SIGBUS, &action, &in.previous_bus);  // what macOS raises for a protected page
  interruption = &in;
  mprotect(in.page, page, PROT_READ);

  const bool copied = ring.copy(first, n_frames, buffer);

  interruption = nullptr;
  sigaction(SIGSEGV, &in.previous_segv, nullptr);
  sigaction(SIGBUS, &in.previous_bus, nullptr);
  CHECK(in.fired);  // the copy was interrupted where the test said
  out->assign(buffer, buffer + n_frames);
  munmap(mapped, 2 * page);
  return copied;
}

}  // namespace

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

TEST(a_copy_overtaken_by_the_producer_while_it_runs_is_refused) {
  static int16_t storage[1000];
  SampleRing ring(storage, 1000, 1);
  for (int i = 0; i < 999; ++i) ring.push(static_cast<int16_t>(i));
  std::vector<int16_t> out;
  // frames 0-998 are all there when the copy starts; halfway through, 600 frames come in and
  // overwrite slots 999 and 0-598, frames 500-598 among them, which the copy has yet to read
  CHECK(!copy_interrupted(ring, 0, 999, 500, 600, 999, &out));
  CHECK_EQ(ring.frames_written(), 1599);
  // what a copy that checked only before it began would have handed out as frames 0-998
  bool mixed = false;
  for (size_t i = 500; i < 599; ++i) mixed = mixed || out[i] != static_cast<int16_t>(i);
  CHECK(mixed);
}

TEST(a_copy_the_producer_interrupts_without_reaching_it_still_succeeds) {
  static int16_t storage[1000];
  SampleRing ring(storage, 1000, 1);
  for (int i = 0; i < 999; ++i) ring.push(static_cast<int16_t>(i));
  std::vector<int16_t> out;
  // frames 400-998; the 300 frames pushed meanwhile fill slots 999 and 0-298 only
  CHECK(copy_interrupted(ring, 400, 599, 300, 300, 999, &out));
  CHECK_EQ(out.size(), 599);
  for (size_t i = 0; i < out.size(); ++i) CHECK_EQ(out[i], 400 + static_cast<int>(i));
}
