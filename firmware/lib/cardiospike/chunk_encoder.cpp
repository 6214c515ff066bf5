#include "chunk_encoder.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "crc32.h"

namespace cardiospike {

namespace {

// Little-endian writes byte by byte, so the bytes are the same on any host.
void put_u16(uint8_t* out, uint16_t value) {
  out[0] = static_cast<uint8_t>(value);
  out[1] = static_cast<uint8_t>(value >> 8);
}

void put_u32(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}

void put_u64(uint8_t* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}

void put_f32(uint8_t* out, float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  put_u32(out, bits);
}

// Appends text to a bounded buffer; remembers when it ran out of room instead of writing past.
class TextWriter {
 public:
  TextWriter(char* out, size_t capacity)
      : out_(out), capacity_(capacity), length_(0), full_(false) {}

  void text(const char* s) {
    for (; *s; ++s) character(*s);
  }

  void character(char c) {
    // Keep one byte for the terminating NUL.
    if (length_ + 1 >= capacity_) {
      full_ = true;
      return;
    }
    out_[length_++] = c;
  }

  void unsigned_integer(uint64_t value) {
    // Our own digits rather than printf's %llu, which newlib-nano builds leave out.
    char digits[20];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value);
    while (n) character(digits[--n]);
  }

  void integer(int32_t value) {
    if (value < 0) {
      character('-');
      unsigned_integer(static_cast<uint64_t>(-static_cast<int64_t>(value)));
    } else {
      unsigned_integer(static_cast<uint64_t>(value));
    }
  }

  void number(float value) {
    // Nine significant digits read back as the same float32 the binary body carries.
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.9g", static_cast<double>(value));
    text(buffer);
  }

  size_t finish() {
    if (full_ || capacity_ == 0) return 0;
    out_[length_] = '\0';
    return length_;
  }

 private:
  char* out_;
  size_t capacity_;
  size_t length_;
  bool full_;
};

}  // namespace

ChunkHeader make_chunk_header() {
  ChunkHeader header;
  header.session_id = 0;
  header.seq = 0;
  header.first_sample = 0;
  header.fs_hz = 0.0f;
  header.gain_adc_per_mv = 0.0f;
  header.baseline_adc = 0;
  header.n_channels = 1;
  header.battery_pct = kBatteryUnknown;
  header.lead_off = false;
  header.age_ms = kAgeUnknown;
  return header;
}

const char* chunk_problem(const ChunkHeader& header, size_t n_frames) {
  if (n_frames == 0) return "a chunk holds at least one frame";
  if (n_frames > kMaxChunkFrames) return "more than 5000 frames in one chunk";
  if (header.n_channels < 1 || header.n_channels > kMaxChannels) return "n_channels must be 1-16";
  if (!std::isfinite(header.fs_hz) || header.fs_hz <= 0.0f) return "fs_hz must be positive";
  if (!std::isfinite(header.gain_adc_per_mv) || header.gain_adc_per_mv <= 0.0f) {
    return "gain_adc_per_mv must be positive";
  }
  if (header.battery_pct > 100 && header.battery_pct != kBatteryUnknown) {
    return "battery_pct must be 0-100 or unknown (255)";
  }
  // first_sample travels as a JSON number too; the server refuses anything past 2^53
  if (header.first_sample > (static_cast<uint64_t>(1) << 53)) return "first_sample too large";
  if (header.age_ms != kAgeUnknown && header.age_ms > kMaxAgeMs) return "age_ms over an hour";
  return nullptr;
}

size_t encode_binary_chunk(const ChunkHeader& header, const int16_t* samples, size_t n_frames,
                           uint8_t* out, size_t out_capacity) {
  if (chunk_problem(header, n_frames) != nullptr) return 0;
  const size_t n_values = n_frames * header.n_channels;
  const bool age_known = header.age_ms != kAgeUnknown;
  const size_t total = binary_chunk_bytes(n_frames, header.n_channels, age_known);
  if (out_capacity < total) return 0;

  const bool battery_known = header.battery_pct != kBatteryUnknown;
  std::memcpy(out, "CSK1", 4);
  out[4] = kProtocolVersion;
  out[5] = static_cast<uint8_t>((header.lead_off ? kFlagLeadOff : 0) |
                                (battery_known ? kFlagBattery : 0) | (age_known ? kFlagAge : 0));
  out[6] = header.n_channels;
  out[7] = 0;
  put_u32(out + 8, header.session_id);
  put_u32(out + 12, header.seq);
  put_u64(out + 16, header.first_sample);
  put_f32(out + 24, header.fs_hz);
  put_f32(out + 28, header.gain_adc_per_mv);
  put_u16(out + 32, static_cast<uint16_t>(header.baseline_adc));
  out[34] = header.battery_pct;
  out[35] = 0;
  put_u16(out + 36, static_cast<uint16_t>(n_frames));
  uint8_t* data = out + kBinaryHeaderBytes;
  for (size_t i = 0; i < n_values; ++i) put_u16(data + 2 * i, static_cast<uint16_t>(samples[i]));
  if (age_known) put_u32(data + 2 * n_values, header.age_ms);
  const size_t before_crc = total - kBinaryCrcBytes;
  put_u32(out + before_crc, crc32(out, before_crc));
  return total;
}

size_t encode_json_chunk(const ChunkHeader& header, const int16_t* samples, size_t n_frames,
                         char* out, size_t out_capacity) {
  if (chunk_problem(header, n_frames) != nullptr) return 0;
  const size_t n_values = n_frames * header.n_channels;
  char session[9];
  format_session_id(header.session_id, session);

  TextWriter json(out, out_capacity);
  json.text("{\"version\":");
  json.unsigned_integer(kProtocolVersion);
  json.text(",\"session\":\"");
  json.text(session);
  json.text("\",\"seq\":");
  json.unsigned_integer(header.seq);
  json.text(",\"first_sample\":");
  json.unsigned_integer(header.first_sample);
  json.text(",\"fs_hz\":");
  json.number(header.fs_hz);
  json.text(",\"gain_adc_per_mv\":");
  json.number(header.gain_adc_per_mv);
  json.text(",\"baseline_adc\":");
  json.integer(header.baseline_adc);
  json.text(",\"n_channels\":");
  json.unsigned_integer(header.n_channels);
  json.text(",\"samples\":[");
  for (size_t i = 0; i < n_values; ++i) {
    if (i) json.character(',');
    json.integer(samples[i]);
  }
  json.text("],\"lead_off\":");
  json.text(header.lead_off ? "true" : "false");
  if (header.battery_pct != kBatteryUnknown) {
    json.text(",\"battery_pct\":");
    json.unsigned_integer(header.battery_pct);
  }
  if (header.age_ms != kAgeUnknown) {
    json.text(",\"age_ms\":");
    json.unsigned_integer(header.age_ms);
  }
  json.character('}');
  return json.finish();
}

void format_session_id(uint32_t session_id, char out[9]) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 8; ++i) out[i] = kHex[(session_id >> (28 - 4 * i)) & 0xF];
  out[8] = '\0';
}

}  // namespace cardiospike
