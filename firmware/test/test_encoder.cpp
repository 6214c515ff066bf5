// The chunk encoder writes exactly the bytes of docs/device-protocol.md.

#include <cstring>
#include <string>

#include "check.h"
#include "chunk_encoder.h"
#include "crc32.h"

using namespace cardiospike;

namespace {

ChunkHeader known_header() {
  ChunkHeader header = make_chunk_header();
  header.session_id = 0x9f3a61c2u;
  header.seq = 17;
  header.first_sample = 4250;
  header.fs_hz = 250.0f;
  header.gain_adc_per_mv = 1241.2f;
  header.baseline_adc = 2048;
  header.n_channels = 1;
  header.battery_pct = 87;
  header.lead_off = true;
  return header;
}

const int16_t kKnownSamples[] = {2051, -1, -32768, 32767};

}  // namespace

TEST(crc32_matches_the_ieee_check_value_and_continues_across_calls) {
  const uint8_t text[] = "123456789";
  CHECK_EQ(crc32(text, 9), 0xCBF43926u);  // the standard check value of CRC-32/ISO-HDLC
  CHECK_EQ(crc32(text, 0), 0u);
  CHECK_EQ(crc32_update(crc32(text, 4), text + 4, 5), 0xCBF43926u);
}

TEST(binary_chunk_has_the_documented_bytes) {
  // Field by field from the table in docs/device-protocol.md; the CRC from Python's zlib.crc32.
  const uint8_t expected[] = {
      'C',  'S',  'K',  '1',                          // magic
      0x01,                                           // version
      0x03,                                           // flags: lead off | battery present
      0x01,                                           // n_channels
      0x00,                                           // reserved
      0xc2, 0x61, 0x3a, 0x9f,                         // session 0x9f3a61c2
      0x11, 0x00, 0x00, 0x00,                         // seq 17
      0x9a, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // first_sample 4250
      0x00, 0x00, 0x7a, 0x43,                         // fs_hz 250.0f
      0x66, 0x26, 0x9b, 0x44,                         // gain 1241.2f
      0x00, 0x08,                                     // baseline 2048
      0x57,                                           // battery 87
      0x00,                                           // reserved
      0x04, 0x00,                                     // n_frames 4
      0x03, 0x08, 0xff, 0xff, 0x00, 0x80, 0xff, 0x7f, // 2051, -1, -32768, 32767
      0xc8, 0x41, 0xce, 0x9d,                         // CRC-32
  };
  uint8_t out[64];
  std::memset(out, 0xAA, sizeof out);
  const size_t length = encode_binary_chunk(known_header(), kKnownSamples, 4, out, sizeof out);
  CHECK_EQ(length, sizeof expected);
  CHECK_EQ(binary_chunk_bytes(4, 1), sizeof expected);
  CHECK(std::memcmp(out, expected, sizeof expected) == 0);
  for (size_t i = 0; i < sizeof expected; ++i) {
    if (out[i] != expected[i]) {
      std::printf("  byte %zu: 0x%02x, expected 0x%02x\n", i, out[i], expected[i]);
    }
  }
  CHECK_EQ(out[sizeof expected], 0xAA);  // nothing written past the end
}

TEST(binary_chunk_with_its_age_sets_flag_bit_2_and_puts_age_ms_before_the_crc) {
  // The documented bytes with age_ms 8000 after the samples; the CRC from Python's zlib.crc32
  // over the server's own encoding of the same chunk.
  ChunkHeader header = known_header();
  header.age_ms = 8000;
  const uint8_t age_and_crc[] = {0x40, 0x1f, 0x00, 0x00, 0xb8, 0xfc, 0x87, 0x57};
  uint8_t out[64];
  std::memset(out, 0xAA, sizeof out);
  const size_t length = encode_binary_chunk(header, kKnownSamples, 4, out, sizeof out);
  CHECK_EQ(length, 38 + 8 + 4 + 4);
  CHECK_EQ(binary_chunk_bytes(4, 1, true), length);
  CHECK_EQ(out[5], kFlagLeadOff | kFlagBattery | kFlagAge);
  CHECK(std::memcmp(out + 38 + 8, age_and_crc, sizeof age_and_crc) == 0);
  CHECK_EQ(out[length], 0xAA);
  // one byte short of the age's four: refused, not cut
  CHECK_EQ(encode_binary_chunk(header, kKnownSamples, 4, out, length - 1), 0);
  // the most the server accepts, and one past it
  header.age_ms = kMaxAgeMs;
  CHECK(chunk_problem(header, 4) == nullptr);
  header.age_ms = kMaxAgeMs + 1;
  CHECK(chunk_problem(header, 4) != nullptr);
  CHECK_EQ(encode_binary_chunk(header, kKnownSamples, 4, out, sizeof out), 0);
}

TEST(binary_chunk_without_battery_or_lead_off_clears_the_flags) {
  ChunkHeader header = known_header();
  header.battery_pct = kBatteryUnknown;
  header.lead_off = false;
  uint8_t out[64];
  CHECK(encode_binary_chunk(header, kKnownSamples, 4, out, sizeof out) > 0);
  CHECK_EQ(out[5], 0);
  CHECK_EQ(out[34], 255);
}

TEST(binary_chunk_interleaves_channels_frame_by_frame) {
  ChunkHeader header = known_header();
  header.n_channels = 3;
  const int16_t samples[] = {1, 2, 3, 4, 5, 6};  // two frames of three channels
  uint8_t out[64];
  const size_t length = encode_binary_chunk(header, samples, 2, out, sizeof out);
  CHECK_EQ(length, 38 + 12 + 4);
  CHECK_EQ(out[6], 3);
  CHECK_EQ(out[36], 2);  // n_frames counts frames, not values
  for (int i = 0; i < 6; ++i) CHECK_EQ(out[38 + 2 * i], i + 1);
  // the CRC covers every byte before it
  uint32_t crc = 0;
  for (int i = 0; i < 4; ++i) crc |= static_cast<uint32_t>(out[length - 4 + i]) << (8 * i);
  CHECK_EQ(crc, crc32(out, length - 4));
}

TEST(encoder_refuses_invalid_chunks_and_short_buffers) {
  uint8_t out[64];
  char text[512];
  ChunkHeader header = known_header();
  CHECK_EQ(encode_binary_chunk(header, kKnownSamples, 4, out, 49), 0);  // one byte short
  CHECK_EQ(encode_binary_chunk(header, kKnownSamples, 0, out, sizeof out), 0);
  CHECK(chunk_problem(header, kMaxChunkFrames + 1) != nullptr);
  CHECK(chunk_problem(header, kMaxChunkFrames) == nullptr);
  header.n_channels = 0;
  CHECK_EQ(encode_binary_chunk(header, kKnownSamples, 4, out, sizeof out), 0);
  header = known_header();
  header.gain_adc_per_mv = 0.0f;
  CHECK_EQ(encode_json_chunk(header, kKnownSamples, 4, text, sizeof text), 0);
  header = known_header();
  header.battery_pct = 101;
  CHECK(chunk_problem(header, 4) != nullptr);
  header = known_header();
  CHECK_EQ(encode_json_chunk(header, kKnownSamples, 4, text, 20), 0);
}

TEST(first_sample_stops_at_2_to_the_53_as_the_server_does) {
  // JSON numbers are doubles: the server refuses first_sample above 2^53 in either format
  uint8_t out[64];
  char text[512];
  ChunkHeader header = known_header();
  header.first_sample = static_cast<uint64_t>(1) << 53;
  CHECK(chunk_problem(header, 4) == nullptr);
  CHECK(encode_binary_chunk(header, kKnownSamples, 4, out, sizeof out) > 0);
  header.first_sample += 1;
  CHECK(chunk_problem(header, 4) != nullptr);
  CHECK_EQ(encode_binary_chunk(header, kKnownSamples, 4, out, sizeof out), 0);
  CHECK_EQ(encode_json_chunk(header, kKnownSamples, 4, text, sizeof text), 0);
  header.first_sample = ~static_cast<uint64_t>(0);
  CHECK_EQ(encode_binary_chunk(header, kKnownSamples, 4, out, sizeof out), 0);
}

TEST(json_chunk_has_integers_and_the_session_as_hex) {
  char text[512];
  const size_t length = encode_json_chunk(known_header(), kKnownSamples, 4, text, sizeof text);
  const std::string expected =
      "{\"version\":1,\"session\":\"9f3a61c2\",\"seq\":17,\"first_sample\":4250,\"fs_hz\":250,"
      "\"gain_adc_per_mv\":1241.19995,\"baseline_adc\":2048,\"n_channels\":1,"
      "\"samples\":[2051,-1,-32768,32767],\"lead_off\":true,\"battery_pct\":87}";
  CHECK_EQ(length, expected.size());
  CHECK(expected == text);
  if (expected != text) std::printf("  got %s\n", text);
  CHECK(length <= json_chunk_max_bytes(4, 1));
}

TEST(json_chunk_carries_age_ms_when_known) {
  ChunkHeader header = known_header();
  header.age_ms = 8000;
  char text[512];
  CHECK(encode_json_chunk(header, kKnownSamples, 4, text, sizeof text) > 0);
  const std::string body = text;
  const std::string last = ",\"battery_pct\":87,\"age_ms\":8000}";  // an integer, last
  CHECK(body.size() > last.size() &&
        body.compare(body.size() - last.size(), last.size(), last) == 0);
  header.age_ms = kAgeUnknown;
  CHECK(encode_json_chunk(header, kKnownSamples, 4, text, sizeof text) > 0);
  CHECK(std::string(text).find("age_ms") == std::string::npos);
}

TEST(json_worst_case_fits_the_advertised_bound) {
  ChunkHeader header = known_header();
  header.n_channels = 16;
  header.seq = 0xFFFFFFFFu;
  header.first_sample = static_cast<uint64_t>(1) << 53;
  header.baseline_adc = -32768;
  header.gain_adc_per_mv = 1.17549435e-38f;  // the longest %.9g a float can print
  header.age_ms = kMaxAgeMs;
  static int16_t samples[kMaxChunkFrames * 16];
  for (size_t i = 0; i < kMaxChunkFrames * 16; ++i) samples[i] = -32768;
  static char text[300 + 7 * kMaxChunkFrames * 16];
  const size_t bound = json_chunk_max_bytes(kMaxChunkFrames, 16);
  CHECK(bound <= sizeof text);
  const size_t length = encode_json_chunk(header, samples, kMaxChunkFrames, text, bound);
  CHECK(length > 0);
  CHECK(length < bound);
}

TEST(session_id_prints_as_eight_lowercase_hex_digits) {
  char text[9];
  format_session_id(0x0000ab01u, text);
  CHECK(std::string("0000ab01") == text);
  format_session_id(0xFFFFFFFFu, text);
  CHECK(std::string("ffffffff") == text);
}
