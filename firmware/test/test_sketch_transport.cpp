// The sketch's HTTP glue (WifiTransport in cardiospike_esp32.ino) against a model of the ESP32
// core's HTTPClient and of the network (sketch_fakes.h): connection reuse, which nobody has run
// on a board yet (README.md), and what the transport hands the uploader. The sketch is compiled
// into this test as it is; the stand-in headers are defined in arduino_fakes.cpp.

#include <cstring>
#include <string>

#include "check.h"
#include "sketch_fakes.h"

#include "../cardiospike_esp32/cardiospike_esp32.ino"

namespace {

using fake::net;

fake::Answer answer(int code, const char* body, bool keep_alive = true,
                    const char* retry_after = "", const char* location = "") {
  fake::Answer result = {code, body, retry_after, location, keep_alive};
  return result;
}

// One post of a 40-byte body whose seq (bytes 12-15) is `seq`, with the reply prepared as the
// uploader prepares it.
cs::HttpReply post_chunk(uint32_t seq = 0) {
  uint8_t body[40] = {0};
  body[12] = static_cast<uint8_t>(seq);
  cs::HttpReply reply;
  reply.status = 0;
  reply.retry_after_s = 0;
  reply.body[0] = '\0';
  reply.location[0] = '\0';
  transport.post(body, sizeof body, cs::kBinaryContentType, &reply);
  return reply;
}

// A fresh network with Wi-Fi up, and the transport told so.
void start_fresh() {
  net.reset();
  transport.connected();
}

bool ends_with(const std::string& text, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return text.size() >= n && text.compare(text.size() - n, n, suffix) == 0;
}

}  // namespace

TEST(sketch_posts_every_chunk_on_one_connection_the_server_keeps_alive) {
  start_fresh();
  for (uint32_t seq = 0; seq < 3; ++seq) {
    const cs::HttpReply reply = post_chunk(seq);
    CHECK_EQ(reply.status, 201);
    CHECK(std::strstr(reply.body, "\"seq\": ") != nullptr);
  }
  CHECK_EQ(net.connections_opened, 1);
  CHECK_EQ(net.connections_closed, 0);
  for (size_t i = 0; i < net.posts.size(); ++i) CHECK_EQ(net.posts[i].connection, 1);
  // each request begun and ended, its answer read before the connection was kept
  CHECK_EQ(net.begins, 3);
  CHECK_EQ(net.ends, 3);
  CHECK_EQ(net.kept_with_body_unread, 0);
  CHECK(net.reuse);
  CHECK(ends_with(net.posts[0].url, "/api/device/v1/chunks/"));
  CHECK(net.posts[0].authorization == "Device " CARDIOSPIKE_DEVICE_TOKEN);
  CHECK(net.posts[0].content_type == cs::kBinaryContentType);
}

TEST(sketch_opens_a_new_connection_after_the_server_closed_its_own) {
  start_fresh();
  net.answers.push_back(answer(201, "{\"seq\": 0}", false));  // Connection: close
  CHECK_EQ(post_chunk(0).status, 201);
  CHECK(!net.tcp_open);
  CHECK_EQ(post_chunk(1).status, 201);
  CHECK_EQ(net.connections_opened, 2);
  CHECK_EQ(net.posts[1].connection, 2);
}

TEST(sketch_reports_a_failed_post_as_no_answer_and_reconnects_for_the_next) {
  start_fresh();
  CHECK_EQ(post_chunk(0).status, 201);
  net.answers.push_back(answer(fake::kErrorReadTimeout, ""));
  const cs::HttpReply timed_out = post_chunk(1);
  CHECK_EQ(timed_out.status, 0);
  CHECK_EQ(timed_out.body[0], '\0');
  CHECK(!net.tcp_open);
  net.answers.push_back(answer(fake::kErrorConnectionRefused, ""));
  CHECK_EQ(post_chunk(1).status, 0);
  CHECK_EQ(post_chunk(1).status, 201);
  CHECK_EQ(net.connections_opened, 2);
}

TEST(sketch_closes_the_kept_connection_when_wifi_drops) {
  start_fresh();
  CHECK_EQ(post_chunk(0).status, 201);
  CHECK(net.tcp_open);
  net.drop_wifi();
  CHECK(!transport.connected());
  CHECK(!net.tcp_open);  // stopped at once, not left for the next post to find dead
  net.wifi_up = true;
  CHECK(transport.connected());
  // the first post after the reconnect goes out on a new connection and is answered
  CHECK_EQ(post_chunk(1).status, 201);
  CHECK_EQ(net.posts_on_dead_connection, 0);
  CHECK_EQ(net.connections_opened, 2);
}

TEST(sketch_reads_retry_after_and_location_of_the_answer_they_came_with) {
  start_fresh();
  net.answers.push_back(answer(429, "{\"detail\": \"throttled\"}", true, "7"));
  net.answers.push_back(answer(301, "", true, "", "https://ward.example/api/device/v1/chunks/"));
  const cs::HttpReply throttled = post_chunk(0);
  CHECK_EQ(throttled.status, 429);
  CHECK_EQ(throttled.retry_after_s, 7);
  CHECK(std::strcmp(throttled.body, "{\"detail\": \"throttled\"}") == 0);
  const cs::HttpReply moved = post_chunk(0);
  CHECK_EQ(moved.status, 301);
  CHECK_EQ(moved.retry_after_s, 0);  // not the last answer's
  CHECK(std::strcmp(moved.location, "https://ward.example/api/device/v1/chunks/") == 0);
  const cs::HttpReply stored = post_chunk(0);
  CHECK_EQ(stored.status, 201);
  CHECK_EQ(stored.location[0], '\0');
  CHECK_EQ(net.connections_opened, 1);
}

TEST(sketch_keeps_the_start_of_a_long_answer_and_reads_the_rest) {
  start_fresh();
  const std::string page = "{\"code\": \"new_session\", \"detail\": \"" + std::string(400, 'x') + "\"}";
  net.answers.push_back(answer(409, page.c_str()));
  const cs::HttpReply reply = post_chunk(0);
  CHECK_EQ(reply.status, 409);
  CHECK_EQ(std::strlen(reply.body), sizeof reply.body - 1);
  CHECK(cs::json_string_field_is(reply.body, "code", cs::kNewSessionCode));
  CHECK_EQ(net.kept_with_body_unread, 0);
  CHECK_EQ(post_chunk(1).status, 201);  // the same connection, its last answer read
  CHECK_EQ(net.connections_opened, 1);
}

TEST(sketch_streams_through_a_wifi_drop_and_delivers_every_chunk_once) {
  start_fresh();
  setup();
  int16_t value = 0;
  // ten loops a second, 25 frames each (the sampling task's 250 Hz); Wi-Fi down from 3 s to 6 s
  for (int tick = 0; tick < 160; ++tick) {
    if (tick == 30) net.drop_wifi();
    if (tick == 60) net.wifi_up = true;
    for (int i = 0; i < 25; ++i) ring.push(value++);
    net.millis += 99;  // loop()'s delay(1) makes it 100
    loop();
  }
  const uint32_t chunks = uploader->next_seq();
  CHECK_EQ(chunks, 16);
  CHECK_EQ(uploader->pending_chunks(), 0);
  CHECK_EQ(uploader->chunks_acknowledged(), chunks);
  CHECK_EQ(net.posts.size(), chunks);  // each chunk posted once: none failed, none repeated
  for (size_t i = 0; i < net.posts.size(); ++i) CHECK_EQ(net.posts[i].seq(), i);
  CHECK_EQ(net.posts_on_dead_connection, 0);
  CHECK_EQ(net.connections_opened, 2);  // one before the drop, one after
  // Each post says how long ago its chunk's last frame was sampled (the sketch's body buffer
  // holds the age's four bytes): chunks 3-5, sampled during the outage, went out one per loop
  // after it (at 1525, 1550 and 1575 frames sampled); the others as they were cut.
  const uint32_t expected_age_ms[] = {0, 0, 0, 2100, 1200, 300};
  for (size_t i = 0; i < net.posts.size(); ++i) {
    CHECK_EQ(net.posts[i].age_ms(), i < 6 ? expected_age_ms[i] : 0);
  }
}

TEST(sketch_restarts_wifi_at_growing_intervals_of_at_most_a_minute) {
  start_fresh();
  maintain_wifi();  // up: the next outage starts from the shortest wait
  net.drop_wifi();
  for (uint32_t s = 1; s <= 400; ++s) {
    net.millis = s * 1000;
    maintain_wifi();
  }
  const uint32_t expected_s[] = {10, 30, 70, 130, 190, 250, 310, 370};
  CHECK_EQ(net.wifi_begins_ms.size(), 8);
  for (size_t i = 0; i < net.wifi_begins_ms.size() && i < 8; ++i) {
    CHECK_EQ(net.wifi_begins_ms[i], expected_s[i] * 1000);
  }
}
