// Philox-4x32-10 (Salmon et al., SC 2011), exactly as ecmpi/rng.py computes it.
//
//   counter = (block lo, block hi, stream lo, stream hi), key = (key lo, key hi)
//   32-bit stream: element i = word i % 4 of block i / 4
//   byte stream:   element i = byte i % 16 (little-endian words, word 0 first) of
//                  block base + i / 16; base 0 (high bytes) or EC_LOW_BYTES (low bytes)
#pragma once
#include "common.cuh"

// First block of the low-byte stream (ecmpi.rng.LOW_BYTES).
#define EC_LOW_BYTES 0x8000000000000000ull

ECMPI_HD void ec_philox4x32_10(ec_u32 c[4], ec_u32 k0, ec_u32 k1) {
  for (int r = 0; r < 10; ++r) {
    if (r) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    ec_u64 p0 = (ec_u64)0xD2511F53u * (ec_u64)c[0];
    ec_u64 p1 = (ec_u64)0xCD9E8D57u * (ec_u64)c[2];
    ec_u32 n0 = (ec_u32)(p1 >> 32) ^ c[1] ^ k0;
    ec_u32 n2 = (ec_u32)(p0 >> 32) ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = (ec_u32)p1;
    c[2] = n2;
    c[3] = (ec_u32)p0;
  }
}

// The four words of block `block` of the stream (key, stream).
ECMPI_HD void ec_philox_block(ec_u64 key, ec_u64 stream, ec_u64 block, ec_u32 out[4]) {
  out[0] = (ec_u32)block;
  out[1] = (ec_u32)(block >> 32);
  out[2] = (ec_u32)stream;
  out[3] = (ec_u32)(stream >> 32);
  ec_philox4x32_10(out, (ec_u32)key, (ec_u32)(key >> 32));
}

ECMPI_HD ec_u32 ec_random_u32(ec_u64 key, ec_u64 stream, ec_u64 i) {
  ec_u32 w[4];
  ec_philox_block(key, stream, i >> 2, w);
  return w[i & 3];
}

// Byte q (0..15) of a block's four words, little-endian.
ECMPI_HD ec_u32 ec_block_byte(const ec_u32 w[4], int q) { return (w[q >> 2] >> (8 * (q & 3))) & 0xFFu; }

ECMPI_HD ec_u32 ec_random_u8(ec_u64 key, ec_u64 stream, ec_u64 base, ec_u64 i) {
  ec_u32 w[4];
  ec_philox_block(key, stream, base + (i >> 4), w);
  return ec_block_byte(w, (int)(i & 15));
}
