// Scaled sign: per-bucket l1 scale r = ||x_k||_1 / len_k, one bit per entry
// (1 for x >= 0), decoded as +r / -r. Same fused/two-pass structure as qsgd.cu.
#include "quant.cuh"

EC_SCALE_KERNEL(float, f32)
EC_SCALE_KERNEL(double, f64)
EC_ENCODE_KERNELS(sign, float, f32, 1, true)
EC_ENCODE_KERNELS(sign, double, f64, 1, true)
EC_DECODE_KERNELS(sign, float, f32, 1, true)
EC_DECODE_KERNELS(sign, double, f64, 1, true)
