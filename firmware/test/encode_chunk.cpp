// encode_chunk: write one protocol v1 chunk body with the firmware's encoder.
//
//   encode_chunk --format binary|json --session 9f3a61c2 --seq 0 --first-sample 0
//                --fs-hz 250 --gain 1241.2 [--baseline 2048] [--channels 1] [--battery 87]
//                [--lead-off] [--age-ms 8000] < samples.txt > chunk.bin
//
// Samples are whitespace-separated integers on stdin, channels interleaved frame by frame. The
// body goes to stdout; a problem goes to stderr with exit status 2. tests/test_firmware.py runs
// it to check that the server's parser accepts what the device sends.

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "chunk_encoder.h"

using namespace cardiospike;

namespace {

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "encode_chunk: %s\n", message.c_str());
  std::fprintf(stderr,
               "usage: encode_chunk --format binary|json --session HEX --seq N "
               "--first-sample N --fs-hz HZ --gain ADC_PER_MV [--baseline ADC] "
               "[--channels N] [--battery PCT] [--lead-off] [--age-ms MS] < samples\n");
  std::exit(2);
}

long long parse_integer(const char* name, const char* text, long long low, long long high,
                        int base = 10) {
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, base);
  if (errno || end == text || *end != '\0' || value < low || value > high) {
    usage_error(std::string(name) + " must be an integer from " + std::to_string(low) + " to " +
                std::to_string(high) + ", got '" + text + "'");
  }
  return value;
}

float parse_float(const char* name, const char* text) {
  errno = 0;
  char* end = nullptr;
  const float value = std::strtof(text, &end);
  if (errno || end == text || *end != '\0') {
    usage_error(std::string(name) + " must be a number, got '" + text + "'");
  }
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  ChunkHeader header = make_chunk_header();
  std::string format;
  bool have_fs = false, have_gain = false;
  for (int i = 1; i < argc; ++i) {
    const std::string option = argv[i];
    if (option == "--lead-off") {
      header.lead_off = true;
      continue;
    }
    if (i + 1 >= argc) usage_error(option + " needs a value");
    const char* value = argv[++i];
    if (option == "--format") {
      format = value;
    } else if (option == "--session") {
      header.session_id =
          static_cast<uint32_t>(parse_integer("--session", value, 0, 0xFFFFFFFFll, 16));
    } else if (option == "--seq") {
      header.seq = static_cast<uint32_t>(parse_integer("--seq", value, 0, 0xFFFFFFFFll));
    } else if (option == "--first-sample") {
      header.first_sample = static_cast<uint64_t>(
          parse_integer("--first-sample", value, 0, static_cast<long long>(1) << 53));
    } else if (option == "--fs-hz") {
      header.fs_hz = parse_float("--fs-hz", value);
      have_fs = true;
    } else if (option == "--gain") {
      header.gain_adc_per_mv = parse_float("--gain", value);
      have_gain = true;
    } else if (option == "--baseline") {
      header.baseline_adc = static_cast<int16_t>(parse_integer("--baseline", value, -32768, 32767));
    } else if (option == "--channels") {
      header.n_channels = static_cast<uint8_t>(parse_integer("--channels", value, 1, kMaxChannels));
    } else if (option == "--battery") {
      header.battery_pct = static_cast<uint8_t>(parse_integer("--battery", value, 0, 100));
    } else if (option == "--age-ms") {
      header.age_ms = static_cast<uint32_t>(parse_integer("--age-ms", value, 0, kMaxAgeMs));
    } else {
      usage_error("unknown option " + option);
    }
  }
  if (format != "binary" && format != "json") usage_error("--format must be binary or json");
  if (!have_fs || !have_gain) usage_error("--fs-hz and --gain are required");

  std::vector<int16_t> samples;
  char word[64];
  while (std::scanf("%63s", word) == 1) {
    samples.push_back(static_cast<int16_t>(parse_integer("a sample", word, -32768, 32767)));
  }
  if (samples.size() % header.n_channels) {
    usage_error(std::to_string(samples.size()) + " samples is not a whole number of " +
                std::to_string(header.n_channels) + "-channel frames");
  }
  const size_t n_frames = samples.size() / header.n_channels;
  const char* problem = chunk_problem(header, n_frames);
  if (problem) usage_error(problem);

  if (format == "binary") {
    std::vector<uint8_t> body(
        binary_chunk_bytes(n_frames, header.n_channels, header.age_ms != kAgeUnknown));
    const size_t length =
        encode_binary_chunk(header, samples.data(), n_frames, body.data(), body.size());
    if (length == 0) usage_error("the encoder refused the chunk");
    std::fwrite(body.data(), 1, length, stdout);
  } else {
    std::vector<char> body(json_chunk_max_bytes(n_frames, header.n_channels));
    const size_t length =
        encode_json_chunk(header, samples.data(), n_frames, body.data(), body.size());
    if (length == 0) usage_error("the encoder refused the chunk");
    std::fwrite(body.data(), 1, length, stdout);
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}
