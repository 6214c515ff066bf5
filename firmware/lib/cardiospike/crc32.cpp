#include "crc32.h"

namespace cardiospike {

uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t n_bytes) {
  // Bit by bit instead of a 1 kB table: a 1 s chunk is about 540 bytes, so this costs well under
  // a millisecond on the ESP32 and keeps the table out of its scarce DRAM.
  crc = ~crc;
  for (size_t i = 0; i < n_bytes; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
  }
  return ~crc;
}

}  // namespace cardiospike
