// TopK: magnitude keys (largest |x| first, ties to the smaller index) and the
// radix-select histogram. The host side (ecmpi/compress/gpu.py) walks the
// 8-bit digits from the top, then keeps keys below the threshold plus the
// first equal ones with cupy.cumsum / cupy.flatnonzero (indices ascending).
#include "select.cuh"

extern "C" __global__ void topk_keys_f32(const float* x, ec_i64 n, ec_u32* keys) {
  ec_i64 i = (ec_i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) keys[i] = ec_topk_key_f32(x[i]);
}

extern "C" __global__ void topk_keys_f64(const double* x, ec_i64 n, ec_u64* keys) {
  ec_i64 i = (ec_i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) keys[i] = ec_topk_key_f64(x[i]);
}

EC_RADIX_HIST_KERNEL(ec_u32, u32)
EC_RADIX_HIST_KERNEL(ec_u64, u64)
