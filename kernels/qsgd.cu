// qsgd and terngrad (terngrad is qsgd with s = 1, linf, stochastic): fused
// error-feedback + bucket scale + stochastic quantization + bit packing, the
// per-bucket scale kernel of the two-pass path, and unpack + dequantize
// (optionally accumulating into a sum). W = 0 is the any-width (1..16) path;
// 2, 4 and 8 are compiled with the width fixed.
#include "quant.cuh"

EC_SCALE_KERNEL(float, f32)
EC_SCALE_KERNEL(double, f64)

#define EC_QSGD_ALL(W)                          \
  EC_ENCODE_KERNELS(qsgd, float, f32, W, false)  \
  EC_ENCODE_KERNELS(qsgd, double, f64, W, false) \
  EC_DECODE_KERNELS(qsgd, float, f32, W, false)  \
  EC_DECODE_KERNELS(qsgd, double, f64, W, false)

EC_QSGD_ALL(0)
EC_QSGD_ALL(2)
EC_QSGD_ALL(4)
EC_QSGD_ALL(8)
