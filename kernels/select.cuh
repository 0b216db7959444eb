// Selection keys and the radix-select histogram shared by topk.cu and randk.cu.
//
// Both sparsifiers keep the k entries with the smallest (key, index) pairs:
//   topk:  key = (largest magnitude bits) - (|x| bits), i.e. the largest |x| first
//   randk: key = random_u32(key, stream, i)
// Ties go to the smaller index. A radix select finds the k-th smallest key
// 8 bits at a time from the top; every entry with a smaller key, plus the
// first entries (by index) equal to it, are kept.
#pragma once
#include "common.cuh"
#include "philox.cuh"

ECMPI_HD ec_u32 ec_float_bits(float v) {
  union { float f; ec_u32 u; } c;
  c.f = v;
  return c.u;
}
ECMPI_HD ec_u64 ec_double_bits(double v) {
  union { double f; ec_u64 u; } c;
  c.f = v;
  return c.u;
}

// Non-negative floats order like their bit patterns, so the complement of
// |x|'s bits orders by decreasing magnitude. NaN ranks as +inf (first), as
// in the NumPy path.
ECMPI_HD ec_u32 ec_topk_key_f32(float v) {
  ec_u32 a = ec_float_bits(v) & 0x7FFFFFFFu;
  if (a > 0x7F800000u) a = 0x7F800000u;
  return 0x7FFFFFFFu - a;
}
ECMPI_HD ec_u64 ec_topk_key_f64(double v) {
  ec_u64 a = ec_double_bits(v) & 0x7FFFFFFFFFFFFFFFull;
  if (a > 0x7FF0000000000000ull) a = 0x7FF0000000000000ull;
  return 0x7FFFFFFFFFFFFFFFull - a;
}

// RandK keys of Philox block `blk`: entries 4*blk .. 4*blk+3 of the 32-bit stream.
ECMPI_HD void ec_randk_keys_block(ec_i64 n, ec_u64 key, ec_u64 stream, ec_i64 blk, ec_u32* keys) {
  ec_u32 w[4];
  ec_philox_block(key, stream, (ec_u64)blk, w);
  for (int j = 0; j < 4; ++j)
    if (blk * 4 + j < n) keys[blk * 4 + j] = w[j];
}

// RandK decoded value: v, or (v * n) / k in float64 when unbiased.
template <typename T>
ECMPI_HD T ec_randk_value(T v, ec_i64 n, ec_i64 k, int unbiased) {
  return unbiased ? (T)(((double)v * (double)n) / (double)k) : v;
}

template <typename K>
ECMPI_HD int ec_digit(K key, int shift) {
  return (int)((key >> shift) & (K)0xFF);
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
// Histogram of digit `shift` over the keys whose bits above it equal `prefix`
// (mask selects those bits). 256 counters per block in shared memory.
template <typename K>
__device__ void ec_radix_hist_body(const K* keys, ec_i64 n, K prefix, K mask, int shift,
                                   unsigned long long* hist) {
  __shared__ unsigned int local[256];
  for (int t = threadIdx.x; t < 256; t += blockDim.x) local[t] = 0u;
  __syncthreads();
  ec_i64 stride = (ec_i64)gridDim.x * blockDim.x;
  for (ec_i64 i = (ec_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    K v = keys[i];
    if ((v & mask) == prefix) atomicAdd(&local[ec_digit<K>(v, shift)], 1u);
  }
  __syncthreads();
  for (int t = threadIdx.x; t < 256; t += blockDim.x)
    if (local[t]) atomicAdd(&hist[t], (unsigned long long)local[t]);
}

#define EC_RADIX_HIST_KERNEL(K, KN)                                                         \
  extern "C" __global__ void radix_hist_##KN(const K *keys, ec_i64 n, K prefix, K mask,     \
                                             int shift, unsigned long long *hist) {         \
    ec_radix_hist_body<K>(keys, n, prefix, mask, shift, hist);                               \
  }
#endif
