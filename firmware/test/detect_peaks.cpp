// detect_peaks: run the firmware's R-peak detector over a recording.
//
//   detect_peaks FS_HZ < samples.txt
//
// Samples are whitespace-separated integers (one channel) on stdin. Prints the sample index of
// every R peak, one a line, then "hr_bpm <rate>" for the rate the display would show at the
// end. tests/test_firmware.py scores it on MIT-BIH records.

#include <cstdio>
#include <cstdlib>

#include "rpeak_detector.h"

int main(int argc, char** argv) {
  char* end = nullptr;
  const float fs_hz = argc == 2 ? std::strtof(argv[1], &end) : 0.0f;
  if (argc != 2 || *end != '\0' || fs_hz < 100.0f || fs_hz > 2000.0f) {
    std::fprintf(stderr, "usage: detect_peaks FS_HZ < samples   (FS_HZ from 100 to 2000)\n");
    return 2;
  }
  cardiospike::RPeakDetector detector(fs_hz);
  long value = 0;
  while (std::scanf("%ld", &value) == 1) {
    if (detector.add(static_cast<int32_t>(value))) {
      std::printf("%llu\n", static_cast<unsigned long long>(detector.last_peak_index()));
    }
  }
  if (!std::feof(stdin)) {
    std::fprintf(stderr, "detect_peaks: stdin holds something that is not an integer\n");
    return 2;
  }
  std::printf("hr_bpm %.1f\n", static_cast<double>(detector.heart_rate_bpm()));
  return 0;
}
