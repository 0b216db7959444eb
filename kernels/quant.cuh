// Bucketed stochastic quantization (qsgd, terngrad) and scaled sign: the
// per-entry arithmetic of docs/compressors.md, the fused error-feedback
// input/residual, and the group encoder/decoder shared by the kernels
// (qsgd.cu, sign.cu) and the host harness (harness.cu).
#pragma once
#include "common.cuh"
#include "philox.cuh"

// qsgd target T = min(fl32(a * Q), 65536 s) of one entry (docs/compressors.md):
//   a = float32(|x|); a scale r < 2^-64 lifts a and r by 2^64 (exact);
//   Q = fl32(s / r) * 65536. r must be finite and > 0.
ECMPI_HD float ec_qsgd_target(float a, float r, int s) {
  if (r < 0x1p-64f) {
    a = a * 0x1p64f;
    r = r * 0x1p64f;
  }
  float q = ((float)s / r) * 65536.0f;
  float t = a * q;
  float ks = 65536.0f * (float)s;
  return t < ks ? t : ks;
}

// Level of target t with the 16-bit draw u (stochastic): (ceil(t) + 65535 - u) >> 16,
// i.e. #{m >= 0 : 65536 m + u < t}; round to nearest: (floor(t) + 32768) >> 16.
ECMPI_HD ec_u32 ec_qsgd_level(float t, ec_u32 u, int stochastic) {
  if (stochastic) return (ec_u32)(((ec_i64)ceilf(t) + 65535 - (ec_i64)u) >> 16);
  return (ec_u32)(((ec_i64)floorf(t) + 32768) >> 16);
}

// qsgd code of entry i: c = s + sign * l. The draw is u = 256 h + g with h the
// entry's high byte (passed in) and g its low byte, drawn only when it decides
// the level (l(256 h) != l(256 h + 255): one entry in 256).
template <typename T>
ECMPI_HD ec_u32 ec_qsgd_code(T x, float r, int s, ec_u32 h, int stochastic, ec_u64 key,
                             ec_u64 stream, ec_u64 i) {
  ec_u32 l = 0u;
  if (r > 0.0f && r <= 3.4028234663852886e38f) {
    float t = ec_qsgd_target((float)fabs((double)x), r, s);
    if (stochastic) {
      l = ec_qsgd_level(t, 256u * h + 255u, 1);
      if (ec_qsgd_level(t, 256u * h, 1) != l)
        l = ec_qsgd_level(t, 256u * h + ec_random_u8(key, stream, EC_LOW_BYTES, i), 1);
    } else {
      l = ec_qsgd_level(t, 0u, 0);
    }
  }
  return x >= (T)0 ? (ec_u32)s + l : (ec_u32)s - l;
}

// qsgd decoded value in float64: (c - s) * (r / s).
ECMPI_HD double ec_qsgd_value(ec_u32 c, double r, int s) {
  double m = (double)((int)c - s);
  return m * (r / (double)s);
}

// Error-feedback input p = g + alpha*h and residual h' = beta*h + (g - q)
// (plain feedback, alpha = beta = 1: h' = p - q), each operation rounded in
// the vector's dtype T (no contraction), as ecmpi/compress/feedback.py does.
template <typename T>
ECMPI_HD T ec_ef_input(T g, T h, T alpha) {
  T t = alpha * h;
  return g + t;
}
template <typename T>
ECMPI_HD T ec_ef_residual(T g, T h, T p, T q, T beta, int plain) {
  if (plain) return p - q;
  T a = beta * h;
  T d = g - q;
  return a + d;
}

// Everything one encode launch needs (built from the kernel's scalar arguments).
template <typename T>
struct EcEncode {
  const T* x;      // input g
  const T* h;      // residual (error feedback) or null
  T* h_out;        // new residual or null (may alias h)
  T* q_out;        // decoded values or null
  T alpha, beta;
  ec_i64 n, b;     // length, bucket size
  int s;           // levels (qsgd); unused by sign
  int op;          // EC_L2 / EC_LINF / EC_L1
  int stochastic;
  int plain;       // error feedback with alpha = beta = 1
  int w;           // code width
  ec_u64 key, stream;
  float* scales;
  ec_u8* codes;
  ec_i64 code_nbytes;

  ECMPI_HD T input(ec_i64 i) const { return h ? ec_ef_input<T>(x[i], h[i], alpha) : x[i]; }
};

template <typename T>
struct EcDecode {
  const ec_u8* codes;
  ec_i64 code_nbytes;
  const float* scales;
  ec_i64 n, b;
  int s, w;
};

// Encode group g (entries 32g .. 32g+31): quantize with the scales already
// in a.scales, pack into w words, store them, and write the decoded values
// and the new residual where asked. pv holds the group's inputs p.
// SIGN selects the scaled-sign code (width 1) instead of qsgd.
template <typename T, int W, bool SIGN>
ECMPI_HD void ec_encode_group(const EcEncode<T>& a, ec_i64 g, const T* pv) {
  const int w = SIGN ? 1 : (W ? W : a.w);
  ec_i64 i0 = g * 32;
  int count = a.n - i0 < 32 ? (int)(a.n - i0) : 32;
  ec_i64 k = i0 / a.b;
  ec_i64 next = (k + 1) * a.b;
  float rf = a.scales[k];
  ec_u32 codes[32];
  ec_u32 rnd[4];
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    ec_u32 c = 0u;
    if (j < count) {
      ec_i64 i = i0 + j;
      if (i == next) {
        ++k;
        next += a.b;
        rf = a.scales[k];
      }
      double r = (double)rf;
      if (SIGN) {
        c = (double)pv[j] >= 0.0 ? 1u : 0u;
      } else {
        ec_u32 h = 0u;
        if (a.stochastic) {
          if ((j & 15) == 0) ec_philox_block(a.key, a.stream, (ec_u64)(i >> 4), rnd);
          h = ec_block_byte(rnd, j & 15);
        }
        c = ec_qsgd_code<T>(pv[j], rf, a.s, h, a.stochastic, a.key, a.stream, (ec_u64)i);
      }
      if (a.q_out || a.h_out) {
        T q = SIGN ? (c ? (T)rf : (T)(-rf)) : (T)ec_qsgd_value(c, r, a.s);
        if (a.q_out) a.q_out[i] = q;
        if (a.h_out) a.h_out[i] = ec_ef_residual<T>(a.x[i], a.h[i], pv[j], q, a.beta, a.plain);
      }
    }
    codes[j] = c;
  }
  ec_u32 words[16];
  ec_pack32(codes, w, words);
  ec_store_words(a.codes, a.code_nbytes, g, w, words);
}

// Decode group g into y[0 .. count).
template <typename T, int W, bool SIGN>
ECMPI_HD int ec_decode_group(const EcDecode<T>& a, ec_i64 g, T* y) {
  const int w = SIGN ? 1 : (W ? W : a.w);
  ec_i64 i0 = g * 32;
  int count = a.n - i0 < 32 ? (int)(a.n - i0) : 32;
  ec_u32 words[16];
  ec_load_words(a.codes, a.code_nbytes, g, w, words);
  ec_i64 k = i0 / a.b;
  ec_i64 next = (k + 1) * a.b;
  float rf = a.scales[k];
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    if (j < count) {
      if (i0 + j == next) {
        ++k;
        next += a.b;
        rf = a.scales[k];
      }
      ec_u32 c = ec_unpack1(words, w, j);
      y[j] = SIGN ? (c ? (T)rf : (T)(-rf)) : (T)ec_qsgd_value(c, (double)rf, a.s);
    }
  }
  return count;
}

// Per-bucket scale, general bucket size (the two-pass path): thread t < Tn of
// the block for bucket k computes the partial S(t, Tn) over the leaves
// t, t+Tn, t+2Tn, ... in halving-tree order (pairwise over bit-reversed
// positions); the block then halves over its Tn partials.
template <typename T>
ECMPI_HD double ec_strided_partial(const EcEncode<T>& a, ec_i64 k, ec_i64 t, ec_i64 tn,
                                   ec_i64 leaves) {
  ec_i64 start = k * a.b;
  ec_i64 len = a.n - start < a.b ? a.n - start : a.b;
  int bits = 0;
  while (((ec_i64)1 << bits) < leaves) ++bits;
  double stack[40];
  int top = 0;
  for (ec_i64 i = 0; i < leaves; ++i) {
    ec_i64 leaf = t + (ec_i64)ec_bitrev((ec_u32)i, bits) * tn;
    double v = leaf < len ? ec_term((double)a.input(start + leaf), a.op) : 0.0;
    stack[top++] = v;
    for (ec_i64 m = i; m & 1; m >>= 1) {
      double right = stack[--top];
      double left = stack[--top];
      stack[top++] = ec_combine(left, right, a.op);
    }
  }
  return stack[0];
}

// Segment geometry of the fused encoder: m buckets per block with m*b a
// multiple of 32 and at most EC_SEG_MAX; 0 when no such m exists.
ECMPI_HD ec_i64 ec_fused_segment(ec_i64 b) {
  if (b > EC_SEG_MAX) return 0;
  ec_i64 m = EC_SEG_MAX / b;
  while (m > 0 && (m * b) % 32 != 0) --m;
  return m * b;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
// ---------------------------------------------------------------------------
// Kernel bodies. The host harness replays the same phases in the same order.
// ---------------------------------------------------------------------------

// Fused: one block per segment of `seg` entries (whole buckets, seg % 32 == 0),
// one thread per group of 32 entries. Reads x (and h) once, writes scales,
// codes, and the residual/decoded values.
template <typename T, int W, bool SIGN>
__device__ void ec_encode_fused_body(const EcEncode<T>& a, ec_i64 seg) {
  __shared__ double sh[EC_SEG_MAX];
  const ec_i64 s0 = (ec_i64)blockIdx.x * seg;
  const int tid = threadIdx.x, nt = blockDim.x;
  ec_i64 seg_valid = a.n - s0 < seg ? a.n - s0 : seg;
  ec_i64 g = s0 / 32 + tid;
  T pv[32];
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    ec_i64 l = (ec_i64)tid * 32 + j;
    pv[j] = l < seg_valid ? a.input(s0 + l) : (T)0;
    sh[l] = l < seg_valid ? ec_term((double)pv[j], a.op) : 0.0;
  }
  __syncthreads();
  const ec_i64 m = (seg_valid + a.b - 1) / a.b;
  for (ec_i64 h = ec_next_pow2(a.b) >> 1; h >= 1; h >>= 1) {
    for (ec_i64 q = tid; q < m * h; q += nt) ec_seg_tree_item(sh, q, h, a.b, seg_valid, a.op);
    __syncthreads();
  }
  for (ec_i64 q = tid; q < m; q += nt) {
    ec_i64 len = seg_valid - q * a.b < a.b ? seg_valid - q * a.b : a.b;
    a.scales[s0 / a.b + q] = ec_finish_scale(sh[q * a.b], a.op, len);
  }
  __syncthreads();
  if (g * 32 < a.n) ec_encode_group<T, W, SIGN>(a, g, pv);
}

// Two-pass, pass 1: one block of EC_SCALE_THREADS per bucket.
template <typename T>
__device__ void ec_scale_body(const EcEncode<T>& a) {
  __shared__ double sh[EC_SCALE_THREADS];
  const ec_i64 k = blockIdx.x;
  const int t = threadIdx.x;
  const ec_i64 bp = ec_next_pow2(a.b);
  const ec_i64 tn = bp < EC_SCALE_THREADS ? bp : EC_SCALE_THREADS;
  if (t < tn) sh[t] = ec_strided_partial<T>(a, k, t, tn, bp / tn);
  __syncthreads();
  for (ec_i64 h = tn >> 1; h >= 1; h >>= 1) {
    if (t < h) sh[t] = ec_combine(sh[t], sh[t + h], a.op);
    __syncthreads();
  }
  if (t == 0) {
    ec_i64 len = a.n - k * a.b < a.b ? a.n - k * a.b : a.b;
    a.scales[k] = ec_finish_scale(sh[0], a.op, len);
  }
}

// Two-pass, pass 2: one thread per group, scales read from a.scales.
template <typename T, int W, bool SIGN>
__device__ void ec_encode_groups_body(const EcEncode<T>& a) {
  ec_i64 g = (ec_i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (g * 32 >= a.n) return;
  T pv[32];
  ec_i64 i0 = g * 32;
#pragma unroll
  for (int j = 0; j < 32; ++j) pv[j] = i0 + j < a.n ? a.input(i0 + j) : (T)0;
  ec_encode_group<T, W, SIGN>(a, g, pv);
}

// Decode (ACC = 0: out = y) or accumulate (ACC = 1: acc = acc + A(y)).
template <typename T, typename A, int W, bool SIGN, bool ACC>
__device__ void ec_decode_body(const EcDecode<T>& a, T* out, A* acc) {
  ec_i64 g = (ec_i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (g * 32 >= a.n) return;
  T y[32];
  int count = ec_decode_group<T, W, SIGN>(a, g, y);
  for (int j = 0; j < count; ++j) {
    ec_i64 i = g * 32 + j;
    if (ACC) acc[i] = acc[i] + (A)y[j];
    else out[i] = y[j];
  }
}

#define EC_ENCODE_PARAMS(T)                                                                   \
  const T *x, const T *h, T *h_out, T *q_out, T alpha, T beta, ec_i64 n, ec_i64 b, int s,     \
      int op, int stochastic, int plain, int w, ec_u64 key, ec_u64 stream, float *scales, ec_u8 *codes, \
      ec_i64 code_nbytes
#define EC_ENCODE_ARGS                                                                        \
  a.x = x; a.h = h; a.h_out = h_out; a.q_out = q_out; a.alpha = alpha; a.beta = beta;         \
  a.n = n; a.b = b; a.s = s; a.op = op; a.stochastic = stochastic; a.plain = plain; a.w = w; a.key = key;      \
  a.stream = stream; a.scales = scales; a.codes = codes; a.code_nbytes = code_nbytes;

// extern "C" entry points: <prefix>_fused_<dtype>_w<W>, <prefix>_groups_..., scale_<dtype>
#define EC_ENCODE_KERNELS(PREFIX, T, TN, W, SIGN)                                              \
  extern "C" __global__ void PREFIX##_fused_##TN##_w##W(EC_ENCODE_PARAMS(T), ec_i64 seg) {   \
    EcEncode<T> a; EC_ENCODE_ARGS ec_encode_fused_body<T, W, SIGN>(a, seg);                   \
  }                                                                                           \
  extern "C" __global__ void PREFIX##_groups_##TN##_w##W(EC_ENCODE_PARAMS(T)) {               \
    EcEncode<T> a; EC_ENCODE_ARGS ec_encode_groups_body<T, W, SIGN>(a);                       \
  }

#define EC_SCALE_KERNEL(T, TN)                                                                \
  extern "C" __global__ void scale_##TN(EC_ENCODE_PARAMS(T)) {                                \
    EcEncode<T> a; EC_ENCODE_ARGS ec_scale_body<T>(a);                                        \
  }

#define EC_DECODE_KERNELS(PREFIX, T, TN, W, SIGN)                                              \
  extern "C" __global__ void PREFIX##_decode_##TN##_w##W(                                     \
      const ec_u8 *codes, ec_i64 code_nbytes, const float *scales, ec_i64 n, ec_i64 b, int s, \
      int w, T *out) {                                                                        \
    EcDecode<T> a = {codes, code_nbytes, scales, n, b, s, w};                                 \
    ec_decode_body<T, T, W, SIGN, false>(a, out, (T *)0);                                     \
  }                                                                                           \
  extern "C" __global__ void PREFIX##_decode_add_##TN##_f32_w##W(                             \
      const ec_u8 *codes, ec_i64 code_nbytes, const float *scales, ec_i64 n, ec_i64 b, int s, \
      int w, float *acc) {                                                                    \
    EcDecode<T> a = {codes, code_nbytes, scales, n, b, s, w};                                 \
    ec_decode_body<T, float, W, SIGN, true>(a, (T *)0, acc);                                  \
  }                                                                                           \
  extern "C" __global__ void PREFIX##_decode_add_##TN##_f64_w##W(                             \
      const ec_u8 *codes, ec_i64 code_nbytes, const float *scales, ec_i64 n, ec_i64 b, int s, \
      int w, double *acc) {                                                                   \
    EcDecode<T> a = {codes, code_nbytes, scales, n, b, s, w};                                 \
    ec_decode_body<T, double, W, SIGN, true>(a, (T *)0, acc);                                 \
  }
#endif
