// A model of what the sketch's HTTP glue talks to: Wi-Fi, one TCP connection and the ESP32
// core's HTTPClient, as far as connection reuse goes. test/arduino_fakes.cpp implements the
// stand-in headers (test/arduino_stubs) on top of it; test/test_sketch_transport.cpp drives the
// sketch through it.
//
// The HTTPClient model follows the core's HTTPClient.cpp (2.x): POST connects unless its
// client is still connected ("try reuse"); an error (a negative code) stops the client;
// getString() reads the body and then calls end() itself; end() keeps the connection when
// setReuse(true) was called and the server allows it (keep-alive), and stops the client
// otherwise; collectHeaders() starts the collected values afresh. It is a model, written from
// the core's source: it shows that the sketch drives the core as intended, not that the core
// behaves so on a board.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace fake {

// What the server (or the network) does with the next POST.
struct Answer {
  int code;                 // an HTTP status, or a negative HTTPClient error (no answer)
  std::string body;         // the answer's body
  std::string retry_after;  // the Retry-After header, "" when absent
  std::string location;     // the Location header, "" when absent
  bool keep_alive;          // the server keeps the connection open after this answer
};

const int kErrorConnectionRefused = -1;  // HTTPC_ERROR_CONNECTION_REFUSED
const int kErrorReadTimeout = -11;       // HTTPC_ERROR_READ_TIMEOUT

struct Post {
  std::string url;
  std::string authorization;
  std::string content_type;
  std::vector<uint8_t> body;
  int connection;  // which TCP connection carried it, counted from 1
  uint32_t seq() const { return u32_at(12); }
  // the age_ms after the samples (flag bit 2), or 0xFFFFFFFF when the body has none
  uint32_t age_ms() const {
    const size_t n_frames = body[36] | (body[37] << 8);
    return (body[5] & 0x04) ? u32_at(38 + 2 * n_frames) : 0xFFFFFFFFu;
  }
  uint32_t u32_at(size_t at) const {
    return body[at] | (body[at + 1] << 8) | (body[at + 2] << 16) |
           (static_cast<uint32_t>(body[at + 3]) << 24);
  }
};

struct Net {
  bool wifi_up = true;
  std::vector<uint32_t> wifi_begins_ms;  // when the sketch called WiFi.begin()
  uint32_t millis = 0;
  // Scripted answers, one per POST; when none is left, the server acknowledges the chunk
  // (201, keep-alive) as monitoring/ingest.py does.
  std::deque<Answer> answers;
  std::vector<Post> posts;

  // the TCP connection
  bool tcp_open = false;
  bool tcp_dead = false;  // Wi-Fi dropped under it: the peer is gone, the client cannot tell
  int connections_opened = 0;
  int posts_on_dead_connection = 0;
  int connections_closed = 0;

  // HTTPClient
  bool reuse = false;       // setReuse()
  bool can_reuse = false;   // the last answer allowed keeping the connection
  bool body_unread = false; // an answer's body not yet read
  int begins = 0;
  int ends = 0;
  int kept_with_body_unread = 0;  // end() kept a connection whose answer was not read
  std::string url;
  std::string authorization;
  std::string content_type;
  std::string collected_retry_after;
  std::string collected_location;
  bool collecting = false;
  std::string pending_body;

  void reset() { *this = Net(); }
  void close_tcp() {
    if (tcp_open) {
      tcp_open = false;
      ++connections_closed;
    }
    tcp_dead = false;
  }
  void drop_wifi() {
    wifi_up = false;
    if (tcp_open) tcp_dead = true;
  }
};

extern Net net;

}  // namespace fake
