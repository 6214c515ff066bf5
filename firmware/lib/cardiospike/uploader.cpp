#include "uploader.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace cardiospike {

const char* link_state_name(LinkState state) {
  switch (state) {
    case kLinkOffline:
      return "offline";
    case kLinkIdle:
      return "idle";
    case kLinkOk:
      return "ok";
    case kLinkRetrying:
      return "retrying";
    case kLinkRefused:
      return "refused";
  }
  return "?";
}

bool is_retryable_status(int status) {
  if (status == 200 || status == 201) return false;
  if (status == 408 || status == 429) return true;
  return !(status >= 300 && status < 500);
}

const char kNewSessionCode[] = "new_session";
const char kBacklogDrop[] = "drop";

namespace {

const char* skip_blanks(const char* p) {
  while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') ++p;
  return p;
}

// Where the value of the key "name" starts in a flat JSON object, or nullptr. A quote escaped
// inside a string is not taken for the start of a key (a message may quote one).
const char* json_value_of(const char* json, const char* name) {
  const size_t name_length = std::strlen(name);
  for (const char* p = std::strchr(json, '"'); p; p = std::strchr(p + 1, '"')) {
    if (p > json && p[-1] == '\\') continue;
    if (std::strncmp(p + 1, name, name_length) != 0 || p[1 + name_length] != '"') continue;
    const char* q = skip_blanks(p + 2 + name_length);
    if (*q != ':') continue;  // the name appeared as a value, not a key
    return skip_blanks(q + 1);
  }
  return nullptr;
}

// Milliseconds that `frames` frames last at fs_hz, at most kMaxAgeMs (a ring longer than an
// hour, which no ESP32 has, would date its oldest chunk by the most the server accepts);
// unknown for a rate the encoder refuses anyway.
uint32_t frames_to_age_ms(uint64_t frames, float fs_hz) {
  if (!(fs_hz > 0.0f)) return kAgeUnknown;
  const double ms = static_cast<double>(frames) * 1000.0 / static_cast<double>(fs_hz) + 0.5;
  return ms >= kMaxAgeMs ? kMaxAgeMs : static_cast<uint32_t>(ms);
}

}  // namespace

bool json_string_field_is(const char* json, const char* name, const char* expected) {
  const char* value = json_value_of(json, name);
  if (value == nullptr || *value != '"') return false;
  const size_t length = std::strlen(expected);
  return std::strncmp(value + 1, expected, length) == 0 && value[1 + length] == '"';
}

bool json_uint_field(const char* json, const char* name, uint32_t* value) {
  const char* q = json_value_of(json, name);
  if (q == nullptr || *q < '0' || *q > '9') return false;
  uint64_t number = 0;
  for (; *q >= '0' && *q <= '9'; ++q) {
    number = number * 10 + static_cast<uint64_t>(*q - '0');
    if (number > 0xFFFFFFFFull) return false;
  }
  *value = static_cast<uint32_t>(number);
  return true;
}

Uploader::Uploader(const UploaderConfig& config, SampleRing& ring, RetryQueue& queue,
                   ChunkTransport& transport, Clock& clock, RandomSource& random, Logger& log,
                   int16_t* scratch, uint8_t* body, size_t body_capacity)
    : config_(config),
      ring_(ring),
      queue_(queue),
      transport_(transport),
      clock_(clock),
      random_(random),
      log_(log),
      scratch_(scratch),
      body_(body),
      body_capacity_(body_capacity),
      backoff_(config.backoff_base_ms, config.backoff_max_ms),
      next_first_sample_(0),
      next_seq_(0),
      session_id_(config.session_id),
      session_first_seq_(0),
      session_first_frame_(0),
      session_requested_(false),
      session_requested_by_(0),
      new_sessions_(0),
      chunks_dropped_for_new_patient_(0),
      frames_dropped_for_new_patient_(0),
      lead_off_now_(false),
      lead_off_latched_(false),
      battery_pct_(kBatteryUnknown),
      was_connected_(false),
      next_attempt_ms_(0),
      link_state_(kLinkOffline),
      chunks_acknowledged_(0),
      chunks_refused_(0),
      frames_lost_(0) {}

void Uploader::set_lead_off(bool lead_off) {
  lead_off_now_ = lead_off;
  if (lead_off) lead_off_latched_ = true;
}

void Uploader::set_battery_pct(uint8_t battery_pct) { battery_pct_ = battery_pct; }

void Uploader::poll() {
  const uint32_t now_ms = clock_.now_ms();
  cut_chunks();
  forget_overwritten();
  if (!transport_.connected()) {
    if (was_connected_) logf("link down: %u chunks wait in the queue", (unsigned)queue_.size());
    was_connected_ = false;
    link_state_ = kLinkOffline;
    return;
  }
  if (!was_connected_) {
    // A fresh link: whatever the backoff said was about the old one, so resend at once.
    was_connected_ = true;
    backoff_.reset();
    next_attempt_ms_ = now_ms;
    link_state_ = kLinkIdle;
    logf("link up: %u chunks to send", (unsigned)queue_.size());
  }
  if (queue_.empty() || static_cast<int32_t>(now_ms - next_attempt_ms_) < 0) return;
  send_oldest(now_ms);
}

void Uploader::cut_chunks() {
  const uint64_t oldest = ring_.oldest_available();
  if (next_first_sample_ < oldest) {
    // The loop fell further behind than the ring holds: those frames are gone, and the next
    // chunk's first_sample leaves a gap the server shows as one.
    frames_lost_ += oldest - next_first_sample_;
    logf("%u frames overwritten before they were cut into chunks",
         (unsigned)(oldest - next_first_sample_));
    next_first_sample_ = oldest;
  }
  while (ring_.frames_written() - next_first_sample_ >= config_.chunk_frames) {
    PendingChunk chunk;
    chunk.seq = next_seq_++;
    chunk.first_sample = next_first_sample_;
    chunk.n_frames = config_.chunk_frames;
    chunk.battery_pct = battery_pct_;
    chunk.lead_off = lead_off_latched_;
    chunk.attempts = 0;
    lead_off_latched_ = lead_off_now_;
    next_first_sample_ += config_.chunk_frames;
    PendingChunk dropped;
    if (queue_.push(chunk, &dropped)) {
      frames_lost_ += dropped.n_frames;
      logf("retry queue full: chunk %u dropped unsent", (unsigned)dropped.seq);
    }
  }
}

void Uploader::forget_overwritten() {
  uint64_t lost = 0;
  const size_t removed = queue_.remove_overwritten(ring_.oldest_available(), &lost);
  if (removed) {
    frames_lost_ += lost;
    logf("%u unacknowledged chunks overwritten in the ring (%u frames lost)", (unsigned)removed,
         (unsigned)lost);
  }
}

void Uploader::send_oldest(uint32_t now_ms) {
  PendingChunk& chunk = queue_.at(0);
  const uint32_t seq = chunk.seq;
  if (!ring_.copy(chunk.first_sample, chunk.n_frames, scratch_)) {
    frames_lost_ += chunk.n_frames;
    logf("chunk %u overwritten in the ring before it was sent", (unsigned)seq);
    queue_.remove(seq);
    return;
  }
  ChunkHeader header = make_chunk_header();
  header.session_id = session_id_;
  header.seq = seq - session_first_seq_;
  header.first_sample = chunk.first_sample - session_first_frame_;
  header.fs_hz = config_.fs_hz;
  header.gain_adc_per_mv = config_.gain_adc_per_mv;
  header.baseline_adc = config_.baseline_adc;
  header.n_channels = ring_.n_channels();
  header.battery_pct = chunk.battery_pct;
  header.lead_off = chunk.lead_off;
  // How long ago the chunk's last frame was sampled, measured now, before this post: the
  // frames sampled since, at the timer's rate. The sampling task goes on pushing while the
  // loop waits (for Wi-Fi at boot, through an outage, on a slow post), so the count is the
  // device's own clock of that wait; a fresh chunk is a few ms old, a chunk queued since boot
  // while Wi-Fi connected is as old as that took. The server dates the recording that this
  // chunk opens from it (it used to take every chunk as just sampled: 7 s late after an 8-s
  // Wi-Fi connect).
  header.age_ms = frames_to_age_ms(ring_.frames_written() - (chunk.first_sample + chunk.n_frames),
                                   config_.fs_hz);
  const size_t length =
      encode_binary_chunk(header, scratch_, chunk.n_frames, body_, body_capacity_);
  if (length == 0) {
    // A configuration error (gain, rate, buffer size): sending it again cannot help.
    logf("chunk %u cannot be encoded: %s", (unsigned)seq,
         chunk_problem(header, chunk.n_frames) ? chunk_problem(header, chunk.n_frames)
                                               : "body buffer too small");
    queue_.remove(seq);
    ++chunks_refused_;
    link_state_ = kLinkRefused;
    return;
  }

  reply_.status = 0;
  reply_.retry_after_s = 0;
  reply_.body[0] = '\0';
  reply_.location[0] = '\0';
  transport_.post(body_, length, kBinaryContentType, &reply_);
  reply_.body[sizeof reply_.body - 1] = '\0';
  reply_.location[sizeof reply_.location - 1] = '\0';

  if (reply_.status == 200 || reply_.status == 201) {
    // the answer numbers the chunks within the session
    uint32_t acknowledged_seq = header.seq;
    json_uint_field(reply_.body, "seq", &acknowledged_seq);
    queue_.remove(session_first_seq_ + acknowledged_seq);
    uint32_t server_next_seq;
    if (json_uint_field(reply_.body, "next_seq", &server_next_seq)) {
      queue_.remove_below(session_first_seq_ + server_next_seq);
    }
    ++chunks_acknowledged_;
    backoff_.reset();
    next_attempt_ms_ = now_ms;
    link_state_ = kLinkOk;
  } else if (reply_.status == 409 && json_string_field_is(reply_.body, "code", kNewSessionCode) &&
             !(session_requested_ && session_requested_by_ == seq)) {
    // Not the chunk's fault: its session cannot go on (the device was moved to another
    // patient, or the session's recording was closed).
    logf("chunk %u refused with HTTP 409: %s", (unsigned)seq, reply_.body);
    if (json_string_field_is(reply_.body, "backlog", kBacklogDrop)) {
      // The device was moved or its patient discharged: the queued chunks were sampled on the
      // previous patient, and sent in the new session they would open the new patient's
      // recording (and raise alarms there). `chunk` refers into the queue this empties.
      start_new_session_without_backlog();
    } else {
      // The same patient (its recording was closed), or a server that predates "backlog": it
      // and every later chunk go out again in a new session, whose first chunk opens the
      // recording of the device's patient.
      start_new_session(seq);
    }
    backoff_.reset();
    next_attempt_ms_ = now_ms;
    link_state_ = kLinkIdle;
  } else if (!is_retryable_status(reply_.status)) {
    // a 409 "new_session" again for the chunk that started this session lands here too: the
    // server would otherwise have it start sessions for ever
    if (reply_.status >= 300 && reply_.status < 400) {
      // A redirect's body is empty: where it points is what names the wrong setting. The
      // Location goes last, so that the log line's 255 characters cut nothing else.
      logf("chunk %u refused with HTTP %d, dropped: the device follows no redirect; "
           "CARDIOSPIKE_SERVER_URL should name the server of Location: %s",
           (unsigned)seq, reply_.status,
           reply_.location[0] ? reply_.location : "(no Location header)");
    } else {
      logf("chunk %u refused with HTTP %d, dropped: %s", (unsigned)seq, reply_.status,
           reply_.body);
    }
    queue_.remove(seq);
    ++chunks_refused_;
    // the server answered, so the link itself is fine
    backoff_.reset();
    next_attempt_ms_ = now_ms;
    link_state_ = kLinkRefused;
  } else {
    ++chunk.attempts;
    uint32_t wait_ms = backoff_.failure(random_.next_u32());
    // honour the server's Retry-After (capped at an hour so the product cannot overflow)
    const uint32_t retry_after_s = reply_.retry_after_s < 3600 ? reply_.retry_after_s : 3600;
    if (retry_after_s * 1000u > wait_ms) wait_ms = retry_after_s * 1000u;
    next_attempt_ms_ = now_ms + wait_ms;
    link_state_ = kLinkRetrying;
    logf("chunk %u: HTTP %d (0: no answer), attempt %u, next try in %u ms", (unsigned)seq,
         reply_.status, (unsigned)chunk.attempts, (unsigned)wait_ms);
  }
}

uint32_t Uploader::draw_session_id() {
  uint32_t session_id = random_.next_u32();
  // the old session is the one refused: the new one must differ
  if (session_id == session_id_) session_id = session_id_ + 1;
  return session_id;
}

void Uploader::start_new_session(uint32_t refused_seq) {
  const uint32_t old_session_id = session_id_;
  const uint32_t session_id = draw_session_id();
  // numbered from the oldest unacknowledged chunk (the one sent is the oldest): seq 0 at
  // sample 0, later chunks at their distance from it, so a gap stays a gap
  const PendingChunk& oldest = queue_.at(0);
  session_id_ = session_id;
  session_first_seq_ = oldest.seq;
  session_first_frame_ = oldest.first_sample;
  session_requested_ = true;
  session_requested_by_ = refused_seq;
  ++new_sessions_;
  char old_name[9], new_name[9];
  format_session_id(old_session_id, old_name);
  format_session_id(session_id, new_name);
  logf("new session %s after session %s: %u chunks to resend", new_name, old_name,
       (unsigned)queue_.size());
}

void Uploader::start_new_session_without_backlog() {
  // Everything sampled before this answer arrived goes: the queued chunks (the refused one
  // included), and also the frames in the ring not yet cut into a chunk. Those were sampled
  // before the device learned of the move just as the queued ones were, and there can be many
  // of them: the sampling task kept pushing frames while the POST blocked the loop (10 s or
  // more against a slow server). When the electrodes went onto the new patient the device
  // cannot tell, so it takes the server's word and starts clean: the new session begins with
  // the first frame sampled after the answer, as seq 0 at first_sample 0.
  const uint32_t old_session_id = session_id_;
  const uint32_t session_id = draw_session_id();
  const size_t chunks = queue_.size();
  uint64_t chunk_frames = 0;
  for (size_t i = 0; i < chunks; ++i) chunk_frames += queue_.at(i).n_frames;
  queue_.remove_below(next_seq_);  // every queued chunk: they were all cut before next_seq_
  const uint64_t sampled = ring_.frames_written();
  const uint64_t uncut_frames = sampled > next_first_sample_ ? sampled - next_first_sample_ : 0;
  next_first_sample_ = sampled;
  // a lead-off seen during the dropped frames says nothing of the next chunk
  lead_off_latched_ = lead_off_now_;

  session_id_ = session_id;
  session_first_seq_ = next_seq_;
  session_first_frame_ = next_first_sample_;
  // the guard against starting sessions for ever: a 409 "new_session" again for the chunk
  // that will start this one drops that chunk
  session_requested_ = true;
  session_requested_by_ = next_seq_;
  ++new_sessions_;
  chunks_dropped_for_new_patient_ += static_cast<uint32_t>(chunks);
  const uint64_t dropped_frames = chunk_frames + uncut_frames;
  frames_dropped_for_new_patient_ += dropped_frames;

  const uint32_t tenths_s = static_cast<uint32_t>(
      static_cast<float>(dropped_frames) * 10.0f / config_.fs_hz + 0.5f);
  char old_name[9], new_name[9];
  format_session_id(old_session_id, old_name);
  format_session_id(session_id, new_name);
  logf("new session %s after session %s: dropped %u unacknowledged chunks and %u frames not "
       "yet cut (%u.%u s), sampled before the device was moved or its patient discharged "
       "(backlog: drop)",
       new_name, old_name, (unsigned)chunks, (unsigned)uncut_frames, (unsigned)(tenths_s / 10),
       (unsigned)(tenths_s % 10));
}

void Uploader::logf(const char* format, ...) {
  char text[256];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  log_.line(text);
}

}  // namespace cardiospike
