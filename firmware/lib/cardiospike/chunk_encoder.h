// Device protocol v1 chunk bodies, binary and JSON (docs/device-protocol.md).
//
// The server's parser is monitoring/protocol.py; tests/test_firmware.py checks that it accepts
// these bytes. Nothing here allocates: the caller passes the output buffer.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cardiospike {

const uint8_t kProtocolVersion = 1;
const size_t kBinaryHeaderBytes = 38;
const size_t kBinaryCrcBytes = 4;
const size_t kBinaryAgeBytes = 4;  // age_ms (u32) after the samples, when kFlagAge is set
const uint8_t kFlagLeadOff = 0x01;
const uint8_t kFlagBattery = 0x02;
const uint8_t kFlagAge = 0x04;
const uint8_t kBatteryUnknown = 255;  // battery_pct when the device cannot measure it
const uint32_t kAgeUnknown = 0xFFFFFFFFu;  // age_ms not sent
const uint32_t kMaxAgeMs = 3600000;  // the server refuses an age_ms over an hour (400)
const size_t kMaxChunkFrames = 5000;  // the server refuses more (413)
const uint8_t kMaxChannels = 16;

const char* const kBinaryContentType = "application/vnd.cardiospike.chunk";
const char* const kJsonContentType = "application/json";

// Everything of a chunk except its samples.
struct ChunkHeader {
  uint32_t session_id;     // drawn at boot; the server shows it as 8 hex digits
  uint32_t seq;            // chunk number within the session, from 0
  uint64_t first_sample;   // index of the chunk's first frame since the session started
  float fs_hz;             // sampling rate, 100-2000 Hz
  float gain_adc_per_mv;   // ADC units per millivolt, > 0
  int16_t baseline_adc;    // ADC value of 0 mV
  uint8_t n_channels;      // 1-16
  uint8_t battery_pct;     // 0-100, or kBatteryUnknown
  bool lead_off;           // the front end reported an electrode off during the chunk
  // How long before sending the chunk's last sample was taken, or kAgeUnknown. The server
  // dates the recording a chunk opens from it (docs/device-protocol.md), so it is measured
  // again before every post, resends included.
  uint32_t age_ms;
};

// A header with the defaults of a one-lead device: everything zero, baseline 0, 1 channel,
// battery unknown, leads on, age unknown.
ChunkHeader make_chunk_header();

// Why a header or sample count cannot make a valid chunk, or nullptr when it can.
const char* chunk_problem(const ChunkHeader& header, size_t n_frames);

// Bytes of the binary body for n_frames frames of n_channels channels, with age_ms or without.
inline size_t binary_chunk_bytes(size_t n_frames, size_t n_channels, bool with_age = false) {
  return kBinaryHeaderBytes + 2 * n_frames * n_channels + (with_age ? kBinaryAgeBytes : 0) +
         kBinaryCrcBytes;
}

// A buffer of this many bytes always holds the JSON body: every sample takes at most 7
// characters ("-32768,") and the fields around them fewer than 300.
inline size_t json_chunk_max_bytes(size_t n_frames, size_t n_channels) {
  return 300 + 7 * n_frames * n_channels;
}

// Write the binary body of a chunk (samples: n_frames x n_channels, channels interleaved frame
// by frame). Returns the number of bytes written, or 0 when the chunk is invalid
// (chunk_problem) or out_capacity is too small.
size_t encode_binary_chunk(const ChunkHeader& header, const int16_t* samples, size_t n_frames,
                           uint8_t* out, size_t out_capacity);

// Write the JSON body (integers for the samples, the session as 8 lowercase hex digits, the
// same session string the server derives from a binary chunk). Returns its length without
// the terminating NUL that follows it, or 0 when invalid or out_capacity is too small.
size_t encode_json_chunk(const ChunkHeader& header, const int16_t* samples, size_t n_frames,
                         char* out, size_t out_capacity);

// Format a session id the way the server shows it: 8 lowercase hex digits and a NUL.
void format_session_id(uint32_t session_id, char out[9]);

}  // namespace cardiospike
