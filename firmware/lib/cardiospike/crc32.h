// CRC-32 as zlib's crc32() computes it (IEEE 802.3, reflected polynomial 0xEDB88320).
//
// The binary chunk ends with this checksum of every byte before it; the server checks it with
// zlib.crc32 (monitoring/protocol.py).
#pragma once

#include <cstddef>
#include <cstdint>

namespace cardiospike {

// Continue a CRC over more bytes: crc32_update(crc32_update(0, a), b) == crc32(a + b).
uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t n_bytes);

inline uint32_t crc32(const uint8_t* data, size_t n_bytes) {
  return crc32_update(0, data, n_bytes);
}

}  // namespace cardiospike
