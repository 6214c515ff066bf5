// The device's side of protocol v1: cut the sampled frames into chunks, post them, keep every
// chunk until the server acknowledges it, resend after failures and after a reconnect, and
// start a new session when the server answers 409 "new_session" (the device was moved to
// another patient, or its session's recording was closed): with the unacknowledged chunks
// renumbered into it, or, when the answer also says "backlog": "drop" (the queued samples were
// taken on the previous patient), without them.
//
// The clock, the HTTP link, the random source and the log are interfaces, so the same logic
// runs on the ESP32 (Arduino's millis(), HTTPClient, esp_random(), Serial) and in the host
// tests (a fake clock and a scripted server).
#pragma once

#include <cstddef>
#include <cstdint>

#include "chunk_encoder.h"
#include "retry_queue.h"
#include "sample_ring.h"

namespace cardiospike {

class Clock {
 public:
  virtual ~Clock() {}
  virtual uint32_t now_ms() = 0;  // monotonic; wraps after 49.7 days, which callers allow for
};

class RandomSource {
 public:
  virtual ~RandomSource() {}
  virtual uint32_t next_u32() = 0;
};

class Logger {
 public:
  virtual ~Logger() {}
  virtual void line(const char* text) = 0;
};

struct HttpReply {
  int status;              // the HTTP status, or 0 when no answer came (no route, timeout)
  uint32_t retry_after_s;  // the Retry-After header of a 429, 0 when absent
  char body[200];          // the start of the answer's body, NUL-terminated
  char location[128];      // the start of a redirect's Location header, "" when absent
};

class ChunkTransport {
 public:
  virtual ~ChunkTransport() {}
  // Whether the network link (Wi-Fi) is up; nothing is posted while it is down.
  virtual bool connected() = 0;
  // POST one chunk body to /api/device/v1/chunks/ and fill *reply.
  virtual void post(const uint8_t* body, size_t length, const char* content_type,
                    HttpReply* reply) = 0;
};

struct UploaderConfig {
  uint32_t session_id;       // the first session's; a new one is drawn when the server asks
  float fs_hz;
  float gain_adc_per_mv;
  int16_t baseline_adc;
  uint16_t chunk_frames;     // frames per chunk: one second is fs_hz frames
  uint32_t backoff_base_ms;  // wait after the first failure in a row
  uint32_t backoff_max_ms;   // the longest wait between attempts
};

// What the display shows as the link status.
enum LinkState {
  kLinkOffline,   // no network
  kLinkIdle,      // network up, nothing answered yet
  kLinkOk,        // the last chunk was acknowledged
  kLinkRetrying,  // the last attempt failed (timeout, 5xx, 408, 429): waiting to retry
  kLinkRefused,   // the server refused (4xx) or redirected (3xx) the last chunk: see the log
};

const char* link_state_name(LinkState state);

class Uploader {
 public:
  // scratch: chunk_frames x n_channels int16 values; body: at least
  // binary_chunk_bytes(chunk_frames, n_channels, true) bytes (every chunk carries its age_ms).
  // Both outlive the uploader.
  Uploader(const UploaderConfig& config, SampleRing& ring, RetryQueue& queue,
           ChunkTransport& transport, Clock& clock, RandomSource& random, Logger& log,
           int16_t* scratch, uint8_t* body, size_t body_capacity);

  // Lead-off as the front end reports it now. A chunk is marked lead off when the electrode
  // was off at any time during it: at any call while it was cut, or as last reported before
  // it began.
  void set_lead_off(bool lead_off);
  void set_battery_pct(uint8_t battery_pct);  // kBatteryUnknown when not measured

  // Call often from the main loop: cuts every complete chunk from the ring, forgets chunks
  // whose frames the ring overwrote, and makes at most one POST when one is due.
  void poll();

  LinkState link_state() const { return link_state_; }
  size_t pending_chunks() const { return queue_.size(); }
  // counted from the start, across sessions (a session's own seq starts again at 0)
  uint32_t next_seq() const { return next_seq_; }
  uint32_t session_id() const { return session_id_; }
  uint32_t new_sessions() const { return new_sessions_; }  // started at the server's request
  // Unacknowledged chunks dropped because a 409 "new_session" said "backlog": "drop" (the
  // refused one included), and their frames plus those sampled but not yet cut into a chunk.
  // Counted apart from chunks_refused() and frames_lost(): nothing went wrong, the samples
  // belong to the previous patient.
  uint32_t chunks_dropped_for_new_patient() const { return chunks_dropped_for_new_patient_; }
  uint64_t frames_dropped_for_new_patient() const { return frames_dropped_for_new_patient_; }
  uint32_t chunks_acknowledged() const { return chunks_acknowledged_; }
  uint32_t chunks_refused() const { return chunks_refused_; }
  uint64_t frames_lost() const { return frames_lost_; }
  uint32_t next_attempt_ms() const { return next_attempt_ms_; }

 private:
  void cut_chunks();
  void forget_overwritten();
  void send_oldest(uint32_t now_ms);
  void start_new_session(uint32_t refused_seq);
  void start_new_session_without_backlog();
  uint32_t draw_session_id();
#if defined(__GNUC__)
  __attribute__((format(printf, 2, 3)))
#endif
  void logf(const char* format, ...);

  UploaderConfig config_;
  SampleRing& ring_;
  RetryQueue& queue_;
  ChunkTransport& transport_;
  Clock& clock_;
  RandomSource& random_;
  Logger& log_;
  int16_t* scratch_;
  uint8_t* body_;
  size_t body_capacity_;
  Backoff backoff_;

  uint64_t next_first_sample_;  // the first frame of the next chunk to cut
  uint32_t next_seq_;
  // The queue counts seq and frames from the start; a chunk goes out numbered from its
  // session's first chunk: seq - session_first_seq_, first_sample - session_first_frame_.
  uint32_t session_id_;
  uint32_t session_first_seq_;
  uint64_t session_first_frame_;
  bool session_requested_;          // the session was started at the server's request,
  uint32_t session_requested_by_;   // for the chunk with this seq
  uint32_t new_sessions_;
  uint32_t chunks_dropped_for_new_patient_;
  uint64_t frames_dropped_for_new_patient_;
  bool lead_off_now_;
  bool lead_off_latched_;
  uint8_t battery_pct_;
  bool was_connected_;
  uint32_t next_attempt_ms_;
  LinkState link_state_;
  uint32_t chunks_acknowledged_;
  uint32_t chunks_refused_;
  uint64_t frames_lost_;
  HttpReply reply_;
};

// Whether a status means the chunk is worth sending again: no answer, 408, 429, 5xx (and any
// status the protocol does not use). Other 4xx answers mean the server will never take it, and
// so does a 3xx: the device follows no redirect, and the server answers the same address the
// same way every time (SECURE_SSL_REDIRECT's 301 to https:// for an http:// server URL).
bool is_retryable_status(int status);

// The unsigned integer value of "name" in a flat JSON object, e.g. next_seq in the server's
// acknowledgment. False when absent or not an unsigned integer below 2^32.
bool json_uint_field(const char* json, const char* name, uint32_t* value);

// Whether "name" is a key of a flat JSON object whose value is the string expected (without
// escapes), e.g. the server's "code": "new_session".
bool json_string_field_is(const char* json, const char* name, const char* expected);

// The "code" of a 409 that asks the device to send the chunk in a new session.
extern const char kNewSessionCode[];
// The "backlog" of such a 409 that asks the device to drop what it has not had acknowledged
// instead of sending it in the new session (the device was moved, or its patient discharged).
extern const char kBacklogDrop[];

}  // namespace cardiospike
