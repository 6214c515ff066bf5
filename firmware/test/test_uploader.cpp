// Retry queue, backoff and the uploader against a scripted server, a fake clock and a fixed
// random source.

#include <cstring>
#include <deque>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "check.h"
#include "uploader.h"

using namespace cardiospike;

namespace {

const int kStoreButLoseAnswer = -1;  // scripted: the server stores the chunk, the answer is lost
const int kNewSession = -2;  // scripted: 409 "new_session" (the device was moved), nothing stored
// scripted: 409 "new_session" with "backlog": "drop" (moved: the queued samples are the previous
// patient's), and with a backlog value the firmware does not know
const int kNewSessionDropBacklog = -3;
const int kNewSessionOtherBacklog = -4;

uint32_t get_u32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

struct Posted {
  std::vector<uint8_t> body;
  uint32_t session() const { return get_u32(&body[8]); }
  uint32_t seq() const { return get_u32(&body[12]); }
  uint64_t first_sample() const {
    return get_u32(&body[16]) | (static_cast<uint64_t>(get_u32(&body[20])) << 32);
  }
  uint16_t n_frames() const { return static_cast<uint16_t>(body[36] | (body[37] << 8)); }
  int16_t sample(size_t i) const {
    return static_cast<int16_t>(body[38 + 2 * i] | (body[39 + 2 * i] << 8));
  }
  uint8_t flags() const { return body[5]; }
  uint8_t battery() const { return body[34]; }
  // the age_ms after the samples (flag bit 2), or kAgeUnknown when the body has none
  uint32_t age_ms() const {
    return (flags() & kFlagAge) ? get_u32(&body[38 + 2 * n_frames()]) : kAgeUnknown;
  }
};

// Answers like the server: 201 the first time a seq of the session arrives, 200 after, with
// next_seq; or whatever status the script says next. A new session is a new recording.
class FakeServer : public ChunkTransport {
 public:
  bool link_up = true;
  std::deque<int> script;
  uint32_t retry_after_s = 0;
  std::string location;  // the Location of a scripted 3xx
  std::vector<Posted> posts;
  std::set<uint32_t> stored;
  std::string content_type;
  // runs during each post, as the sampling task goes on while the loop waits for the answer
  std::function<void()> while_posting;

  bool connected() override { return link_up; }

  void post(const uint8_t* body, size_t length, const char* type, HttpReply* reply) override {
    Posted posted;
    posted.body.assign(body, body + length);
    if (!posts.empty() && posts.back().session() != posted.session()) stored.clear();
    posts.push_back(posted);
    content_type = type;
    if (while_posting) while_posting();
    int status = 0;
    bool store = true;
    const char* code = "";
    if (!script.empty()) {
      status = script.front();
      script.pop_front();
      store = status == kStoreButLoseAnswer;
      if (status == kStoreButLoseAnswer) status = 0;
      if (status == kNewSession) {
        status = 409;
        code = "\"code\": \"new_session\", ";
      } else if (status == kNewSessionDropBacklog) {
        status = 409;
        code = "\"code\": \"new_session\", \"backlog\": \"drop\", ";
      } else if (status == kNewSessionOtherBacklog) {
        status = 409;
        code = "\"code\": \"new_session\", \"backlog\": \"keep\", ";
      }
    } else {
      status = stored.count(posted.seq()) ? 200 : 201;
    }
    if (store) stored.insert(posted.seq());
    reply->status = status;
    reply->retry_after_s = status == 429 ? retry_after_s : 0;
    uint32_t next_seq = 0;
    while (stored.count(next_seq)) ++next_seq;
    if (status == 200 || status == 201) {
      std::snprintf(reply->body, sizeof reply->body,
                    "{\"recording\": 42, \"seq\": %u, \"stored\": %s, \"next_seq\": %u}",
                    posted.seq(), status == 201 ? "true" : "false", next_seq);
    } else if (status >= 300 && status < 400) {
      // as Django's redirects (SECURE_SSL_REDIRECT): an empty body, where to in Location
      std::snprintf(reply->location, sizeof reply->location, "%s", location.c_str());
    } else {
      std::snprintf(reply->body, sizeof reply->body, "{%s\"detail\": \"scripted %d\"}", code,
                    status);
    }
  }
};

class FakeClock : public Clock {
 public:
  uint32_t now = 1000;
  uint32_t now_ms() override { return now; }
};

class FixedRandom : public RandomSource {
 public:
  uint32_t value = 0;
  uint32_t next_u32() override { return value; }
};

class RecordingLog : public Logger {
 public:
  std::vector<std::string> lines;
  void line(const char* text) override { lines.push_back(text); }
  bool mentions(const char* text) const {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].find(text) != std::string::npos) return true;
    }
    return false;
  }
};

const uint16_t kChunkFrames = 250;  // 1 s at 250 Hz

// Everything an uploader needs, as the sketch wires it but with fakes for the outside world.
struct Rig {
  static const uint32_t kRingFrames = 2500;  // 10 s
  static const size_t kQueueSlots = 16;
  int16_t storage[kRingFrames];
  PendingChunk slots[kQueueSlots];
  int16_t scratch[kChunkFrames];
  uint8_t body[600];
  SampleRing ring;
  RetryQueue queue;
  FakeServer server;
  FakeClock clock;
  FixedRandom random;
  RecordingLog log;
  Uploader uploader;
  int16_t next_value = 0;

  explicit Rig(size_t queue_capacity = kQueueSlots)
      : ring(storage, kRingFrames, 1),
        queue(slots, queue_capacity),
        uploader(config(), ring, queue, server, clock, random, log, scratch, body, sizeof body) {}

  static UploaderConfig config() {
    UploaderConfig config;
    config.session_id = 0x12345678u;
    config.fs_hz = 250.0f;
    config.gain_adc_per_mv = 1000.0f;
    config.baseline_adc = 0;
    config.chunk_frames = kChunkFrames;
    config.backoff_base_ms = 1000;
    config.backoff_max_ms = 8000;
    return config;
  }

  // Sample for `seconds` at 250 Hz, polling once per sampled second as the loop would.
  void sample_seconds(int seconds) {
    for (int s = 0; s < seconds; ++s) {
      for (int i = 0; i < 250; ++i) ring.push(next_value++);
      clock.now += 1000;
      uploader.poll();
    }
  }

  void poll_at(uint32_t now) {
    clock.now = now;
    uploader.poll();
  }

  // Every posted chunk carries the samples pushed for its frames (value == frame index).
  bool posts_carry_their_frames() const {
    for (size_t p = 0; p < server.posts.size(); ++p) {
      const Posted& posted = server.posts[p];
      for (size_t i = 0; i < posted.n_frames(); ++i) {
        if (posted.sample(i) != static_cast<int16_t>(posted.first_sample() + i)) return false;
      }
    }
    return true;
  }
};

}  // namespace

TEST(backoff_doubles_to_its_cap_with_jitter_between_half_and_all_of_it) {
  Backoff backoff(500, 8000);
  const uint32_t nominal[] = {500, 1000, 2000, 4000, 8000, 8000, 8000};
  for (int i = 0; i < 7; ++i) {
    // the smallest and the largest draw bound the wait
    Backoff low = backoff, high = backoff;
    const uint32_t shortest = low.failure(0);
    const uint32_t longest = high.failure(nominal[i] / 2);
    const uint32_t wait = backoff.failure(0x9E3779B9u * (i + 1));
    CHECK_EQ(backoff.nominal_ms(), nominal[i]);
    CHECK_EQ(shortest, nominal[i] - nominal[i] / 2);
    CHECK_EQ(longest, nominal[i]);
    CHECK(wait >= shortest && wait <= longest);
  }
  backoff.reset();
  CHECK_EQ(backoff.nominal_ms(), 0);
  CHECK_EQ(backoff.failure(0), 250);
  Backoff huge(1000, 0xF0000000u);
  for (int i = 0; i < 40; ++i) huge.failure(0);
  CHECK_EQ(huge.nominal_ms(), 0xF0000000u);  // no overflow on the way up
}

TEST(retry_queue_keeps_seq_order_and_makes_room_from_the_oldest) {
  PendingChunk slots[3];
  RetryQueue queue(slots, 3);
  PendingChunk chunk = {};
  PendingChunk dropped = {};
  for (uint32_t seq = 0; seq < 3; ++seq) {
    chunk.seq = seq;
    chunk.first_sample = 250 * seq;
    chunk.n_frames = 250;
    CHECK(!queue.push(chunk, &dropped));
  }
  chunk.seq = 3;
  chunk.first_sample = 750;
  CHECK(queue.push(chunk, &dropped));
  CHECK_EQ(dropped.seq, 0);
  CHECK_EQ(queue.size(), 3);
  CHECK(queue.remove(2));
  CHECK(!queue.remove(2));
  CHECK_EQ(queue.at(0).seq, 1);
  CHECK_EQ(queue.at(1).seq, 3);
  CHECK_EQ(queue.remove_below(2), 1);
  CHECK_EQ(queue.at(0).seq, 3);
  uint64_t lost = 0;
  CHECK_EQ(queue.remove_overwritten(751, &lost), 1);
  CHECK_EQ(lost, 250);
  CHECK(queue.empty());
}

TEST(acknowledgment_fields_are_read_by_name) {
  const char* ack = "{\"recording\": 42, \"seq\": 17, \"stored\": true, \"next_seq\": 18}";
  uint32_t value = 0;
  CHECK(json_uint_field(ack, "seq", &value));
  CHECK_EQ(value, 17);  // not next_seq's 18
  CHECK(json_uint_field(ack, "next_seq", &value));
  CHECK_EQ(value, 18);
  CHECK(!json_uint_field(ack, "end_sample", &value));
  CHECK(!json_uint_field("{\"detail\": \"seq\"}", "seq", &value));
  CHECK(!json_uint_field("{\"seq\": -1}", "seq", &value));
  CHECK(!json_uint_field("{\"seq\": 4294967296}", "seq", &value));
  CHECK(json_uint_field("{\"seq\":4294967295}", "seq", &value));
  CHECK_EQ(value, 4294967295u);
  // a key quoted inside a message is not a key
  CHECK(!json_uint_field("{\"detail\": \"say \\\"seq\\\": 5\"}", "seq", &value));
}

TEST(the_code_of_an_error_is_read_by_name_and_whole) {
  const char* answer = "{\"code\": \"new_session\", \"detail\": \"start a new session\"}";
  CHECK(json_string_field_is(answer, "code", kNewSessionCode));
  CHECK(json_string_field_is("{\"code\":\"new_session\"}", "code", "new_session"));
  CHECK(!json_string_field_is(answer, "code", "new"));
  CHECK(!json_string_field_is("{\"code\": \"new_sessions\"}", "code", "new_session"));
  CHECK(!json_string_field_is("{\"detail\": \"code\"}", "code", "new_session"));
  CHECK(!json_string_field_is("{\"code\": 409}", "code", "new_session"));
  CHECK(!json_string_field_is("{\"detail\": \"x \\\"code\\\": \\\"new_session\\\"\"}", "code",
                              "new_session"));
  const char* moved = "{\"code\": \"new_session\", \"backlog\": \"drop\", \"detail\": \"moved\"}";
  CHECK(json_string_field_is(moved, "backlog", kBacklogDrop));
  CHECK(!json_string_field_is(answer, "backlog", kBacklogDrop));
  CHECK(!json_string_field_is("{\"backlog\": \"dropped\"}", "backlog", kBacklogDrop));
}

TEST(status_classes_follow_the_protocol) {
  CHECK(!is_retryable_status(200));
  CHECK(!is_retryable_status(201));
  CHECK(is_retryable_status(0));
  CHECK(is_retryable_status(408));
  CHECK(is_retryable_status(429));
  CHECK(is_retryable_status(500));
  CHECK(is_retryable_status(503));
  // 404: no chunk endpoint at the server URL, or a deleted recording; asking again gets it again
  const int refused[] = {400, 401, 403, 404, 409, 410, 413, 415};
  for (int i = 0; i < 8; ++i) CHECK(!is_retryable_status(refused[i]));
  // the device follows no redirect, and asking again gets the same one
  const int redirects[] = {300, 301, 302, 303, 307, 308};
  for (int i = 0; i < 6; ++i) CHECK(!is_retryable_status(redirects[i]));
}

TEST(uploader_posts_each_second_as_a_chunk_and_forgets_it_once_acknowledged) {
  Rig rig;
  rig.sample_seconds(3);
  for (int i = 0; i < 10; ++i) rig.ring.push(rig.next_value++);  // part of a fourth second
  rig.poll_at(rig.clock.now + 10);
  CHECK_EQ(rig.server.posts.size(), 3);
  CHECK(rig.server.content_type == kBinaryContentType);
  for (uint32_t seq = 0; seq < rig.server.posts.size(); ++seq) {
    CHECK_EQ(rig.server.posts[seq].seq(), seq);
    CHECK_EQ(rig.server.posts[seq].first_sample(), 250 * seq);
    CHECK_EQ(rig.server.posts[seq].n_frames(), 250);
  }
  CHECK(rig.posts_carry_their_frames());
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
  CHECK_EQ(rig.uploader.chunks_acknowledged(), 3);
  CHECK_EQ(rig.uploader.next_seq(), 3);  // the ten frames wait for the rest of their second
  CHECK(rig.uploader.link_state() == kLinkOk);
}

TEST(chunks_wait_while_offline_and_go_out_in_order_after_reconnect) {
  Rig rig;
  rig.server.link_up = false;
  rig.sample_seconds(5);
  CHECK_EQ(rig.server.posts.size(), 0);
  CHECK_EQ(rig.uploader.pending_chunks(), 5);
  CHECK(rig.uploader.link_state() == kLinkOffline);
  rig.server.link_up = true;
  for (int i = 0; i < 5; ++i) rig.poll_at(rig.clock.now + 1);
  CHECK_EQ(rig.server.posts.size(), 5);
  for (uint32_t seq = 0; seq < 5; ++seq) CHECK_EQ(rig.server.posts[seq].seq(), seq);
  CHECK(rig.posts_carry_their_frames());
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
  CHECK_EQ(rig.uploader.frames_lost(), 0);
  CHECK(rig.log.mentions("link up"));
}

TEST(chunks_sampled_before_wifi_came_up_carry_their_age) {
  // The firmware samples from boot; Wi-Fi came up 8 s later. The eight chunks sampled
  // meanwhile go out oldest first, each with the time since its last frame was sampled,
  // measured before its post: the server dates the recording the first one opens from it
  // (without it, the recording started 7 s late and its newest sample lay 7 s in the future).
  Rig rig;
  rig.server.link_up = false;
  rig.sample_seconds(8);
  rig.server.link_up = true;
  // the sampling task goes on while each post waits for its answer: 20 ms of frames a post
  rig.server.while_posting = [&rig]() {
    for (int i = 0; i < 5; ++i) rig.ring.push(rig.next_value++);
  };
  for (int i = 0; i < 8; ++i) rig.poll_at(rig.clock.now + 20);
  CHECK_EQ(rig.server.posts.size(), 8);
  for (uint32_t k = 0; k < rig.server.posts.size(); ++k) {
    CHECK_EQ(rig.server.posts[k].seq(), k);
    CHECK(rig.server.posts[k].flags() & kFlagAge);
    // 2000 frames at the link's return and 5 more a post, less the chunk's end at 250 (k + 1)
    CHECK_EQ(rig.server.posts[k].age_ms(), (2000 + 5 * k - 250 * (k + 1)) * 4);
  }
  CHECK_EQ(rig.server.posts[0].age_ms(), 7000);
  CHECK(rig.posts_carry_their_frames());
  // a chunk posted as it is cut is as old as the frames sampled since: none here
  rig.server.while_posting = nullptr;
  rig.sample_seconds(1);
  CHECK_EQ(rig.server.posts.back().seq(), 8);
  CHECK_EQ(rig.server.posts.back().age_ms(), (2040 + 250 - 2250) * 4);
}

TEST(a_resent_chunk_carries_its_age_at_the_resend) {
  Rig rig;
  rig.random.value = 0;  // a 500-ms backoff after the first failure
  rig.server.script = {503};
  rig.sample_seconds(1);  // chunk 0 posted as it is cut: 0 ms old, answered 503
  rig.sample_seconds(1);  // the backoff is over: chunk 0 again, one second older
  rig.sample_seconds(1);  // chunk 1, then chunk 2, posted as they are cut... one per poll
  CHECK_EQ(rig.server.posts.size(), 3);
  CHECK_EQ(rig.server.posts[0].seq(), 0);
  CHECK_EQ(rig.server.posts[0].age_ms(), 0);
  CHECK_EQ(rig.server.posts[1].seq(), 0);
  CHECK_EQ(rig.server.posts[1].age_ms(), 1000);
  CHECK_EQ(rig.server.posts[2].seq(), 1);
  CHECK_EQ(rig.server.posts[2].age_ms(), 1000);
}

TEST(server_errors_back_off_exponentially_and_resend_the_same_bytes) {
  Rig rig;
  rig.random.value = 0;  // the shortest wait of each step: half the nominal
  rig.server.script = {503, 0, 408, 500};
  for (int i = 0; i < 250; ++i) rig.ring.push(rig.next_value++);
  const uint32_t start = 5000;
  rig.poll_at(start);
  CHECK_EQ(rig.server.posts.size(), 1);
  uint32_t at = start;
  const uint32_t waits[] = {500, 1000, 2000, 4000};
  for (int i = 0; i < 4; ++i) {
    CHECK(rig.uploader.link_state() == kLinkRetrying);
    rig.poll_at(at + waits[i] - 1);
    CHECK_EQ(rig.server.posts.size(), 1 + i);  // not before the wait is over
    at += waits[i];
    rig.poll_at(at);
    CHECK_EQ(rig.server.posts.size(), 2 + i);
  }
  CHECK(rig.uploader.link_state() == kLinkOk);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
  for (size_t i = 1; i < rig.server.posts.size(); ++i) {
    CHECK(rig.server.posts[i].body == rig.server.posts[0].body);
  }
  CHECK(rig.log.mentions("HTTP 503"));
  // success reset the backoff: the next failure waits the first step again
  rig.server.script = {503};
  for (int i = 0; i < 250; ++i) rig.ring.push(rig.next_value++);
  rig.poll_at(at + 1);
  CHECK_EQ(rig.uploader.next_attempt_ms(), at + 1 + 500);
}

TEST(too_many_requests_waits_as_long_as_retry_after_says) {
  Rig rig;
  rig.server.script = {429};
  rig.server.retry_after_s = 5;
  rig.sample_seconds(1);
  const uint32_t first_post = rig.clock.now;
  CHECK_EQ(rig.server.posts.size(), 1);
  rig.poll_at(first_post + 4999);
  CHECK_EQ(rig.server.posts.size(), 1);
  rig.poll_at(first_post + 5000);
  CHECK_EQ(rig.server.posts.size(), 2);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
}

TEST(retry_after_is_capped_at_an_hour_so_a_huge_one_cannot_wrap_to_a_short_wait) {
  // 4294968 s x 1000 is 704 ms past 2^32: without the cap the wait would wrap to 704 ms
  const uint32_t huge[] = {4294968u, 7200u, 0xFFFFFFFFu};  // the last: "-1" read as unsigned
  for (int i = 0; i < 3; ++i) {
    Rig rig;
    rig.random.value = 0;
    rig.server.script = {429};
    rig.server.retry_after_s = huge[i];
    rig.sample_seconds(1);
    const uint32_t first_post = rig.clock.now;
    CHECK_EQ(rig.uploader.next_attempt_ms(), first_post + 3600u * 1000u);
    rig.poll_at(first_post + 704);
    rig.poll_at(first_post + 3600u * 1000u - 1);
    CHECK_EQ(rig.server.posts.size(), 1);
    rig.poll_at(first_post + 3600u * 1000u);
    CHECK_EQ(rig.server.posts.size(), 2);
  }
}

TEST(refused_chunk_is_dropped_logged_and_the_next_one_goes_on) {
  Rig rig;
  rig.server.script = {409};
  rig.sample_seconds(2);  // chunk 0 refused at the first poll, chunk 1 posted at the second
  rig.poll_at(rig.clock.now + 1);
  CHECK_EQ(rig.server.posts.size(), 2);
  CHECK_EQ(rig.server.posts[0].seq(), 0);
  CHECK_EQ(rig.server.posts[1].seq(), 1);
  CHECK_EQ(rig.uploader.chunks_refused(), 1);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
  CHECK(rig.log.mentions("chunk 0 refused with HTTP 409"));
  CHECK(rig.server.stored.count(0) == 0);
  // a 409 without the "new_session" code is a conflict: the session goes on
  CHECK_EQ(rig.uploader.session_id(), Rig::config().session_id);
  CHECK_EQ(rig.uploader.new_sessions(), 0);
}

TEST(a_404_drops_the_chunk_and_the_next_one_goes_on) {
  // No chunk endpoint at the server URL (another server, a path prefix missing): the same
  // address answers 404 every time, so the chunk is dropped, not resent for ever.
  Rig rig;
  rig.server.script = {404};
  rig.sample_seconds(2);
  rig.poll_at(rig.clock.now + 60000);
  CHECK_EQ(rig.server.posts.size(), 2);
  CHECK_EQ(rig.server.posts[0].seq(), 0);
  CHECK_EQ(rig.server.posts[1].seq(), 1);
  CHECK_EQ(rig.uploader.chunks_refused(), 1);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
  CHECK(rig.log.mentions("chunk 0 refused with HTTP 404, dropped"));
  CHECK_EQ(rig.uploader.new_sessions(), 0);
}

TEST(a_redirect_drops_the_chunk_and_logs_where_it_points_instead_of_retrying) {
  // An http:// server URL against SECURE_SSL_REDIRECT: every chunk gets 301 to https://.
  const int redirects[] = {301, 302, 307, 308};
  for (int i = 0; i < 4; ++i) {
    Rig rig;
    rig.server.script = {redirects[i]};
    rig.server.location = "https://monitor.example.org/api/device/v1/chunks/";
    rig.sample_seconds(1);
    CHECK_EQ(rig.server.posts.size(), 1);
    CHECK(rig.uploader.link_state() == kLinkRefused);
    CHECK_EQ(rig.uploader.chunks_refused(), 1);
    CHECK_EQ(rig.uploader.pending_chunks(), 0);
    char expected[128];
    std::snprintf(expected, sizeof expected, "chunk 0 refused with HTTP %d, dropped", redirects[i]);
    CHECK(rig.log.mentions(expected));
    CHECK(rig.log.mentions("no redirect"));
    CHECK(rig.log.mentions("Location: https://monitor.example.org/api/device/v1/chunks/"));
    // not sent again, however long it waits; the next chunk goes out at once
    rig.poll_at(rig.clock.now + 60000);
    CHECK_EQ(rig.server.posts.size(), 1);
    rig.sample_seconds(1);
    CHECK_EQ(rig.server.posts.size(), 2);
    CHECK_EQ(rig.server.posts.back().seq(), 1);
    CHECK(!rig.log.mentions("next try"));
  }
  // a redirect without Location says so
  Rig rig;
  rig.server.script = {301};
  rig.sample_seconds(1);
  CHECK(rig.log.mentions("(no Location header)"));
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
}

TEST(new_session_answer_resends_the_chunk_and_the_rest_in_a_new_session) {
  Rig rig;
  rig.sample_seconds(2);  // chunks 0 and 1 stored in the first session
  const uint32_t first_session = Rig::config().session_id;
  rig.random.value = 0xCAFE0001u;
  rig.server.link_up = false;
  rig.sample_seconds(3);  // chunks 2-4 queued while the device is moved to another patient
  rig.server.link_up = true;
  rig.server.script = {kNewSession};
  for (int i = 0; i < 6; ++i) rig.poll_at(rig.clock.now + 1);

  CHECK_EQ(rig.uploader.new_sessions(), 1);
  CHECK_EQ(rig.uploader.session_id(), 0xCAFE0001u);
  CHECK_EQ(rig.uploader.chunks_refused(), 0);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
  CHECK_EQ(rig.uploader.frames_lost(), 0);
  // 0, 1; 2 refused; then 2, 3, 4 as the new session's 0, 1, 2 from sample 0, once each
  CHECK_EQ(rig.server.posts.size(), 6);
  if (rig.server.posts.size() != 6) return;  // the checks below index the posts
  const Posted& refused = rig.server.posts[2];
  CHECK_EQ(refused.session(), first_session);
  CHECK_EQ(refused.seq(), 2);
  for (uint32_t i = 0; i < 3; ++i) {
    const Posted& posted = rig.server.posts[3 + i];
    CHECK_EQ(posted.session(), 0xCAFE0001u);
    CHECK_EQ(posted.seq(), i);
    CHECK_EQ(posted.first_sample(), 250 * i);
    CHECK_EQ(posted.sample(0), static_cast<int16_t>(250 * (2 + i)));  // the device's frame
  }
  CHECK_EQ(rig.server.stored.size(), 3);
  CHECK(rig.uploader.link_state() == kLinkOk);
  CHECK(rig.log.mentions("chunk 2 refused with HTTP 409"));
  CHECK(rig.log.mentions("new session cafe0001 after session 12345678: 3 chunks to resend"));

  // later chunks go on in the new session
  rig.sample_seconds(1);
  CHECK_EQ(rig.server.posts.back().session(), 0xCAFE0001u);
  CHECK_EQ(rig.server.posts.back().seq(), 3);
  CHECK_EQ(rig.server.posts.back().first_sample(), 750);
}

TEST(a_new_session_keeps_the_gaps_between_queued_chunks) {
  Rig rig(4);  // a full queue gives up its oldest chunks: a gap before the survivors
  rig.server.link_up = false;
  rig.sample_seconds(6);  // chunks 2-5 queued, 0 and 1 gone
  rig.server.link_up = true;
  rig.server.script = {kNewSession};
  for (int i = 0; i < 6; ++i) rig.poll_at(rig.clock.now + 1);
  CHECK_EQ(rig.server.posts.size(), 5);
  if (rig.server.posts.size() != 5) return;
  CHECK_EQ(rig.server.posts[1].seq(), 0);
  CHECK_EQ(rig.server.posts[1].first_sample(), 0);
  CHECK_EQ(rig.server.posts[4].seq(), 3);
  CHECK_EQ(rig.server.posts[4].first_sample(), 750);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
}

TEST(a_new_session_differs_from_the_refused_one_whatever_the_random_draw) {
  Rig rig;
  rig.random.value = Rig::config().session_id;
  rig.server.script = {kNewSession};
  rig.sample_seconds(2);
  CHECK(rig.uploader.session_id() != Rig::config().session_id);
  CHECK_EQ(rig.server.posts.size(), 2);
  if (rig.server.posts.size() != 2) return;
  CHECK_EQ(rig.server.posts[1].session(), rig.uploader.session_id());
}

TEST(a_chunk_refused_again_in_the_session_it_started_is_dropped) {
  Rig rig;
  rig.random.value = 0xCAFE0001u;
  rig.server.script = {kNewSession, kNewSession};
  rig.sample_seconds(1);  // chunk 0 refused: a new session
  rig.poll_at(rig.clock.now + 1);  // refused again there: dropped, not one more session
  rig.sample_seconds(1);
  CHECK_EQ(rig.server.posts.size(), 3);
  if (rig.server.posts.size() != 3) return;
  CHECK_EQ(rig.uploader.new_sessions(), 1);
  CHECK_EQ(rig.uploader.chunks_refused(), 1);
  CHECK(rig.log.mentions("chunk 0 refused with HTTP 409, dropped"));
  // chunk 1 goes on in the new session, after the gap the dropped chunk left
  CHECK_EQ(rig.server.posts[2].session(), 0xCAFE0001u);
  CHECK_EQ(rig.server.posts[2].seq(), 1);
  CHECK_EQ(rig.server.posts[2].first_sample(), 250);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
}

TEST(new_session_with_backlog_drop_never_resends_the_queue_and_starts_with_the_next_chunk) {
  Rig rig;
  rig.sample_seconds(2);  // chunks 0 and 1 stored in the first session
  const uint32_t first_session = Rig::config().session_id;
  rig.random.value = 0xCAFE0002u;
  rig.server.link_up = false;
  rig.sample_seconds(3);  // chunks 2-4 queued while the device is moved to another patient
  for (int i = 0; i < 100; ++i) rig.ring.push(rig.next_value++);  // not a whole chunk yet
  rig.server.link_up = true;
  rig.server.script = {kNewSessionDropBacklog};
  // 300 frames more arrive while the refused chunk's POST waits for its answer
  rig.server.while_posting = [&rig]() {
    for (int i = 0; i < 300; ++i) rig.ring.push(rig.next_value++);
  };
  rig.poll_at(rig.clock.now + 1);
  rig.server.while_posting = nullptr;
  const int16_t first_new_frame = rig.next_value;  // 5 x 250 + 100 + 300 = 1650

  CHECK_EQ(rig.server.posts.size(), 3);
  CHECK_EQ(rig.server.posts.back().session(), first_session);
  CHECK_EQ(rig.server.posts.back().seq(), 2);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
  CHECK_EQ(rig.uploader.new_sessions(), 1);
  CHECK_EQ(rig.uploader.session_id(), 0xCAFE0002u);
  CHECK_EQ(rig.uploader.chunks_dropped_for_new_patient(), 3);
  CHECK_EQ(rig.uploader.frames_dropped_for_new_patient(), 3 * 250 + 100 + 300);
  CHECK_EQ(rig.uploader.chunks_refused(), 0);
  CHECK_EQ(rig.uploader.frames_lost(), 0);
  CHECK(rig.log.mentions("chunk 2 refused with HTTP 409"));
  CHECK(rig.log.mentions("new session cafe0002 after session 12345678: dropped 3 unacknowledged "
                         "chunks and 400 frames not yet cut (4.6 s)"));
  // nothing queued goes out again, however long it waits
  for (int i = 0; i < 5; ++i) rig.poll_at(rig.clock.now + 10000);
  CHECK_EQ(rig.server.posts.size(), 3);

  // the next chunk sampled opens the new session, from the first frame after the answer
  rig.sample_seconds(2);
  CHECK_EQ(rig.server.posts.size(), 5);
  if (rig.server.posts.size() != 5) return;
  for (uint32_t i = 0; i < 2; ++i) {
    const Posted& posted = rig.server.posts[3 + i];
    CHECK_EQ(posted.session(), 0xCAFE0002u);
    CHECK_EQ(posted.seq(), i);
    CHECK_EQ(posted.first_sample(), 250 * i);
    CHECK_EQ(posted.sample(0), static_cast<int16_t>(first_new_frame + 250 * i));
  }
  CHECK_EQ(rig.server.stored.size(), 2);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
  CHECK(rig.uploader.link_state() == kLinkOk);
}

TEST(new_session_with_an_unknown_backlog_value_renumbers_and_resends_as_without_one) {
  Rig rig;
  rig.random.value = 0xCAFE0003u;
  rig.server.link_up = false;
  rig.sample_seconds(2);
  rig.server.link_up = true;
  rig.server.script = {kNewSessionOtherBacklog};
  for (int i = 0; i < 4; ++i) rig.poll_at(rig.clock.now + 1);
  CHECK_EQ(rig.server.posts.size(), 3);
  if (rig.server.posts.size() != 3) return;
  CHECK_EQ(rig.server.posts[1].session(), 0xCAFE0003u);
  CHECK_EQ(rig.server.posts[1].seq(), 0);
  CHECK_EQ(rig.server.posts[1].sample(0), 0);  // the refused chunk, resent
  CHECK_EQ(rig.server.posts[2].seq(), 1);
  CHECK_EQ(rig.uploader.chunks_dropped_for_new_patient(), 0);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
}

TEST(the_first_chunk_after_a_dropped_backlog_refused_again_is_dropped) {
  Rig rig;
  rig.random.value = 0xCAFE0004u;
  rig.server.script = {kNewSessionDropBacklog, kNewSessionDropBacklog};
  rig.sample_seconds(1);  // chunk 0 refused: dropped with the backlog, a new session
  rig.sample_seconds(1);  // chunk 1 starts it and is refused again: dropped, no third session
  rig.poll_at(rig.clock.now + 10000);
  rig.sample_seconds(1);  // chunk 2 goes on in the new session
  CHECK_EQ(rig.uploader.new_sessions(), 1);
  CHECK_EQ(rig.uploader.session_id(), 0xCAFE0004u);
  CHECK_EQ(rig.uploader.chunks_dropped_for_new_patient(), 1);
  CHECK_EQ(rig.uploader.chunks_refused(), 1);
  CHECK(rig.log.mentions("chunk 1 refused with HTTP 409, dropped"));
  CHECK_EQ(rig.server.posts.size(), 3);
  if (rig.server.posts.size() != 3) return;
  CHECK_EQ(rig.server.posts[1].session(), 0xCAFE0004u);
  CHECK_EQ(rig.server.posts[1].seq(), 0);
  CHECK_EQ(rig.server.posts[1].sample(0), 250);  // chunk 1, not chunk 0 again
  CHECK_EQ(rig.server.posts[2].session(), 0xCAFE0004u);
  CHECK_EQ(rig.server.posts[2].seq(), 1);  // after the gap the dropped chunk left
  CHECK_EQ(rig.server.posts[2].first_sample(), 250);
  CHECK_EQ(rig.server.posts[2].sample(0), 500);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
}

TEST(a_chunk_whose_answer_was_lost_is_sent_again_and_acknowledged_once_stored) {
  Rig rig;
  rig.server.script = {kStoreButLoseAnswer};
  rig.random.value = 0;
  rig.sample_seconds(1);
  CHECK_EQ(rig.uploader.pending_chunks(), 1);
  rig.poll_at(rig.clock.now + 500);
  CHECK_EQ(rig.server.posts.size(), 2);
  CHECK(rig.server.posts[1].body == rig.server.posts[0].body);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
  CHECK_EQ(rig.server.stored.size(), 1);
}

TEST(next_seq_acknowledges_every_chunk_below_it) {
  Rig rig;
  rig.server.link_up = false;
  rig.sample_seconds(3);
  // the server already holds chunks 1 and 2 (their answers were lost on the way back)
  rig.server.stored.insert(1);
  rig.server.stored.insert(2);
  rig.server.link_up = true;
  rig.poll_at(rig.clock.now + 1);
  CHECK_EQ(rig.server.posts.size(), 1);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);  // next_seq 3 covers 1 and 2
}

TEST(a_link_down_longer_than_the_ring_loses_the_oldest_chunks_as_a_gap) {
  Rig rig;  // the ring holds 10 s
  rig.server.link_up = false;
  rig.sample_seconds(15);
  rig.server.link_up = true;
  for (int i = 0; i < 20; ++i) rig.poll_at(rig.clock.now + 1);
  // 3750 frames pushed, 2499 still readable: chunk k (frames 250k...) survives when
  // 3750 - 250k < 2500, so chunks 0-5 are lost and 6-14 are delivered
  CHECK_EQ(rig.server.posts.size(), 9);
  for (size_t i = 0; i < rig.server.posts.size(); ++i) {
    CHECK_EQ(rig.server.posts[i].seq(), 6 + i);
    CHECK_EQ(rig.server.posts[i].first_sample(), 250 * (6 + i));
  }
  CHECK(rig.posts_carry_their_frames());
  CHECK_EQ(rig.uploader.frames_lost(), 6 * 250);
  CHECK(rig.log.mentions("overwritten"));
}

TEST(a_loop_that_stalls_longer_than_the_ring_leaves_a_gap_in_first_sample) {
  Rig rig;
  rig.sample_seconds(1);
  for (int i = 0; i < 12 * 250; ++i) rig.ring.push(rig.next_value++);  // 12 s without a poll
  for (int i = 0; i < 20; ++i) rig.poll_at(rig.clock.now + 1);
  // frames 250-1250 were gone before they were cut: the next chunk starts at the oldest frame
  CHECK_EQ(rig.server.posts[1].first_sample(), 3250 - 2500 + 1);
  CHECK_EQ(rig.uploader.frames_lost(), 3250 - 2500 + 1 - 250);
  CHECK(rig.posts_carry_their_frames());
}

TEST(a_full_retry_queue_gives_up_its_oldest_chunk) {
  Rig rig(4);  // fewer slots than the ring holds seconds
  rig.server.link_up = false;
  rig.sample_seconds(7);
  CHECK_EQ(rig.uploader.pending_chunks(), 4);
  rig.server.link_up = true;
  for (int i = 0; i < 6; ++i) rig.poll_at(rig.clock.now + 1);
  CHECK_EQ(rig.server.posts.size(), 4);
  CHECK_EQ(rig.server.posts[0].seq(), 3);  // 0, 1 and 2 made room
  CHECK_EQ(rig.uploader.frames_lost(), 3 * 250);
  CHECK(rig.log.mentions("retry queue full"));
}

TEST(reconnect_resends_at_once_whatever_the_backoff_was) {
  Rig rig;
  rig.random.value = 0;
  rig.server.script = {503, 503, 503};
  rig.sample_seconds(1);
  rig.poll_at(rig.clock.now + 500);
  rig.poll_at(rig.clock.now + 1000);
  CHECK_EQ(rig.server.posts.size(), 3);  // now waiting 2 s
  rig.server.link_up = false;
  rig.poll_at(rig.clock.now + 10);
  rig.server.link_up = true;
  rig.poll_at(rig.clock.now + 10);
  CHECK_EQ(rig.server.posts.size(), 4);
  CHECK_EQ(rig.uploader.pending_chunks(), 0);
}

TEST(retry_times_survive_the_millisecond_clock_wrap) {
  Rig rig;
  rig.random.value = 0;
  rig.server.script = {503};
  for (int i = 0; i < 250; ++i) rig.ring.push(rig.next_value++);
  const uint32_t start = 0xFFFFFFFFu - 100;
  rig.poll_at(start);
  CHECK_EQ(rig.uploader.next_attempt_ms(), 399);  // start + 500 wrapped past zero
  // before the wrap now_ms is far above next_attempt_ms: a plain now < next would send here
  rig.poll_at(start + 50);
  CHECK_EQ(rig.server.posts.size(), 1);
  rig.poll_at(start + 499);  // wrapped past zero, still 1 ms early
  CHECK_EQ(rig.server.posts.size(), 1);
  rig.poll_at(start + 500);
  CHECK_EQ(rig.server.posts.size(), 2);
}

TEST(lead_off_and_battery_travel_in_the_chunk_that_saw_them) {
  Rig rig;
  rig.uploader.set_battery_pct(80);
  rig.uploader.set_lead_off(true);
  rig.uploader.set_lead_off(false);  // off for a moment during the first second
  rig.sample_seconds(2);
  CHECK_EQ(rig.server.posts.size(), 2);
  // (every chunk carries its age as well)
  CHECK_EQ(rig.server.posts[0].flags(), kFlagLeadOff | kFlagBattery | kFlagAge);
  CHECK_EQ(rig.server.posts[1].flags(), kFlagBattery | kFlagAge);
  CHECK_EQ(rig.server.posts[1].battery(), 80);
  // an electrode that stays off marks every chunk until it is reported back on; the chunk
  // during which that happens still saw it off
  rig.uploader.set_lead_off(true);
  rig.sample_seconds(2);
  rig.uploader.set_lead_off(false);
  rig.sample_seconds(2);
  CHECK_EQ(rig.server.posts.size(), 6);
  CHECK_EQ(rig.server.posts[2].flags() & kFlagLeadOff, kFlagLeadOff);
  CHECK_EQ(rig.server.posts[3].flags() & kFlagLeadOff, kFlagLeadOff);
  CHECK_EQ(rig.server.posts[4].flags() & kFlagLeadOff, kFlagLeadOff);
  CHECK_EQ(rig.server.posts[5].flags() & kFlagLeadOff, 0);
}
