// Shared definitions for ecmpi's CUDA kernels and their host emulation.
//
// Every per-element and per-bucket function is `ECMPI_HD`: compiled for the
// device by NVRTC/nvcc and for the host by the test harness (harness.cu, or
// g++ with the CUDA qualifiers defined away), so the host run checks the very
// arithmetic the kernels execute. Compile with --fmad=false (no contraction).
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define ECMPI_HD __host__ __device__ __forceinline__
#else
#define ECMPI_HD inline
#endif

#if !defined(__CUDACC_RTC__)
#include <math.h>
#endif

typedef unsigned char ec_u8;
typedef unsigned short ec_u16;
typedef unsigned int ec_u32;
typedef unsigned long long ec_u64;
typedef long long ec_i64;

// Scale reductions: the term each entry contributes and how terms combine.
enum { EC_L2 = 0, EC_LINF = 1, EC_L1 = 2 };

// Largest bucket-aligned segment one block of the fused encoder holds in
// shared memory (float64 terms): 4096 entries = 32 KiB.
#define EC_SEG_MAX 4096
// Threads per block of the per-bucket scale kernel (power of two).
#define EC_SCALE_THREADS 256

ECMPI_HD ec_i64 ec_next_pow2(ec_i64 v) {
  ec_i64 p = 1;
  while (p < v) p <<= 1;
  return p;
}

ECMPI_HD double ec_term(double v, int op) {
  double a = fabs(v);
  return op == EC_L2 ? v * v : a;
}

// One node of the reduction tree: sum for l2/l1, max for linf (exact in any order).
ECMPI_HD double ec_combine(double left, double right, int op) {
  if (op == EC_LINF) return left < right ? right : left;
  return left + right;
}

// The float32 scale of a bucket from its tree value (docs/compressors.md):
// l2 -> float32(sqrt(S)), linf -> float32(S), l1 -> float32(S / len).
ECMPI_HD float ec_finish_scale(double s, int op, ec_i64 len) {
  if (op == EC_L2) return (float)sqrt(s);
  if (op == EC_L1) return (float)(s / (double)len);
  return (float)s;
}

// ---------------------------------------------------------------------------
// Bit packing, LSB-first (ecmpi/compress/packing.py): entry j of width w sits
// at bits j*w .. j*w+w-1 of the stream; a 32-bit little-endian word holds
// stream bits 32*i .. 32*i+31. A group of 32 entries fills exactly w words.
// ---------------------------------------------------------------------------
ECMPI_HD void ec_pack32(const ec_u32* codes, int w, ec_u32* words) {
  for (int i = 0; i < w; ++i) words[i] = 0u;
  for (int j = 0; j < 32; ++j) {
    int bit = j * w;
    int wi = bit >> 5, sh = bit & 31;
    words[wi] |= codes[j] << sh;
    if (sh + w > 32) words[wi + 1] |= codes[j] >> (32 - sh);
  }
}

ECMPI_HD ec_u32 ec_unpack1(const ec_u32* words, int w, int j) {
  int bit = j * w;
  int wi = bit >> 5, sh = bit & 31;
  ec_u32 v = words[wi] >> sh;
  if (sh + w > 32) v |= words[wi + 1] << (32 - sh);
  return v & ((1u << w) - 1u);
}

// Load the w words of group g from the codes section (nbytes long). Bytes
// past the end read as zero, so the last, partial group needs no special case.
ECMPI_HD void ec_load_words(const ec_u8* codes, ec_i64 nbytes, ec_i64 g, int w, ec_u32* words) {
  ec_i64 base = g * 4 * (ec_i64)w;
  if (base + 4 * w <= nbytes) {
    const ec_u32* src = (const ec_u32*)(codes + base);
    for (int i = 0; i < w; ++i) words[i] = src[i];
    return;
  }
  for (int i = 0; i < w; ++i) {
    ec_u32 v = 0u;
    for (int c = 0; c < 4; ++c) {
      ec_i64 at = base + 4 * i + c;
      if (at < nbytes) v |= (ec_u32)codes[at] << (8 * c);
    }
    words[i] = v;
  }
}

// Store group g's w words; the last group writes only the bytes inside the section.
ECMPI_HD void ec_store_words(ec_u8* codes, ec_i64 nbytes, ec_i64 g, int w, const ec_u32* words) {
  ec_i64 base = g * 4 * (ec_i64)w;
  if (base + 4 * w <= nbytes) {
    ec_u32* dst = (ec_u32*)(codes + base);
    for (int i = 0; i < w; ++i) dst[i] = words[i];
    return;
  }
  for (int i = 0; i < w; ++i)
    for (int c = 0; c < 4; ++c) {
      ec_i64 at = base + 4 * i + c;
      if (at < nbytes) codes[at] = (ec_u8)(words[i] >> (8 * c));
    }
}

// ---------------------------------------------------------------------------
// Tree sums in the order of a shared-memory halving reduction: for
// h = B/2, ..., 1: v[j] = v[j] + v[j+h] for j < h (zero past the bucket).
// ---------------------------------------------------------------------------

// One item of a halving step over consecutive buckets of length b held in v
// (the fused encoder's shared segment): item q is (bucket q / h, j = q % h).
ECMPI_HD void ec_seg_tree_item(double* v, ec_i64 q, ec_i64 h, ec_i64 b, ec_i64 seg_valid,
                               int op) {
  ec_i64 k = q / h, j = q - k * h;
  ec_i64 len = seg_valid - k * b;
  if (len > b) len = b;
  if (j + h < len) v[k * b + j] = ec_combine(v[k * b + j], v[k * b + j + h], op);
}

ECMPI_HD ec_u32 ec_bitrev(ec_u32 i, int bits) {
  ec_u32 r = 0u;
  for (int t = 0; t < bits; ++t) r |= ((i >> t) & 1u) << (bits - 1 - t);
  return r;
}
