// RandK: the shared random keys random_u32(key, stream, i) (one Philox block
// per four entries), the radix-select histogram, and the value scatter of
// decode (y_i = v, or (v * n) / k in float64 when unbiased).
#include "select.cuh"

extern "C" __global__ void randk_keys(ec_i64 n, ec_u64 key, ec_u64 stream, ec_u32* keys) {
  ec_i64 blk = (ec_i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (blk * 4 < n) ec_randk_keys_block(n, key, stream, blk, keys);
}

EC_RADIX_HIST_KERNEL(ec_u32, u32)

#define EC_RANDK_SCATTER(T, TN)                                                              \
  extern "C" __global__ void randk_scatter_##TN(const T* vals, const ec_u32* idx, ec_i64 k,  \
                                                ec_i64 n, int unbiased, T* out) {            \
    ec_i64 j = (ec_i64)blockIdx.x * blockDim.x + threadIdx.x;                                \
    if (j < k) out[idx[j]] = ec_randk_value<T>(vals[j], n, k, unbiased);                     \
  }
EC_RANDK_SCATTER(float, f32)
EC_RANDK_SCATTER(double, f64)
