// Host-only test harness: runs the kernels' __host__ __device__ functions on
// the CPU, replaying each kernel's phases in the kernel's order, so a test
// can compare the results byte for byte with ecmpi.rng and the NumPy
// reference. Built by tests/test_kernels_host.py with
//   nvcc -x cu --fmad=false -std=c++17 -I kernels kernels/harness.cu       (host code of a .cu)
//   g++ -x c++ -ffp-contract=off -std=c++17 -I kernels kernels/harness.cu  (qualifiers defined away)
// Not part of the runtime: ecmpi/_kernels.py never compiles this file.
//
//   harness philox KEY STREAM START COUNT          -> u32[COUNT], u8[COUNT], low u8[COUNT]
//   harness encode T CODEC PATH W n b s op stoch w key stream ef alpha beta
//           (ef: 0 none, 1 plain alpha = beta = 1, 2 general)
//           stdin x[n] (h[n] if ef)                 -> scales, codes, q[n], h_out[n] (if ef)
//   harness decode T CODEC W n b s w ACC           stdin scales, codes (acc[n])  -> y[n] / acc[n]
//   harness topkkey T n        stdin x[n]          -> keys[n]
//   harness randkkey n key stream                  -> keys[n]
//   harness digits K n shift   stdin keys[n]       -> u8 digits[n]
//   harness randkvalue T n k unbiased  stdin v[k]  -> values[k]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "quant.cuh"
#include "select.cuh"

static std::vector<unsigned char> read_all() {
  std::vector<unsigned char> buf;
  unsigned char tmp[65536];
  size_t got;
  while ((got = fread(tmp, 1, sizeof tmp, stdin)) > 0) buf.insert(buf.end(), tmp, tmp + got);
  return buf;
}

static void put(const void* p, size_t n) { fwrite(p, 1, n, stdout); }

static ec_u64 u64arg(const char* s) { return strtoull(s, nullptr, 0); }

static void philox(char** a) {
  ec_u64 key = u64arg(a[0]), stream = u64arg(a[1]), start = u64arg(a[2]), count = u64arg(a[3]);
  std::vector<ec_u32> w(count);
  std::vector<ec_u8> h(count), g(count);
  for (ec_u64 i = 0; i < count; ++i) {
    w[i] = ec_random_u32(key, stream, start + i);
    h[i] = (ec_u8)ec_random_u8(key, stream, 0, start + i);
    g[i] = (ec_u8)ec_random_u8(key, stream, EC_LOW_BYTES, start + i);
  }
  put(w.data(), 4 * count);
  put(h.data(), count);
  put(g.data(), count);
}

// Replays ec_encode_fused_body block by block: phase 1 (inputs and terms),
// the halving steps, the scale writes, then each thread's group encode.
template <typename T, int W, bool SIGN>
static void replay_fused(const EcEncode<T>& a) {
  ec_i64 seg = ec_fused_segment(a.b);
  if (!seg) {
    fprintf(stderr, "bucket %lld has no fused segment\n", a.b);
    exit(2);
  }
  int nt = (int)(seg / 32);
  std::vector<double> sh(EC_SEG_MAX);
  std::vector<T> pv((size_t)nt * 32);
  for (ec_i64 blk = 0; blk * seg < a.n; ++blk) {
    ec_i64 s0 = blk * seg;
    ec_i64 seg_valid = a.n - s0 < seg ? a.n - s0 : seg;
    for (int tid = 0; tid < nt; ++tid)
      for (int j = 0; j < 32; ++j) {
        ec_i64 l = (ec_i64)tid * 32 + j;
        pv[l] = l < seg_valid ? a.input(s0 + l) : (T)0;
        sh[l] = l < seg_valid ? ec_term((double)pv[l], a.op) : 0.0;
      }
    ec_i64 m = (seg_valid + a.b - 1) / a.b;
    for (ec_i64 h = ec_next_pow2(a.b) >> 1; h >= 1; h >>= 1)
      for (ec_i64 q = 0; q < m * h; ++q) ec_seg_tree_item(sh.data(), q, h, a.b, seg_valid, a.op);
    for (ec_i64 q = 0; q < m; ++q) {
      ec_i64 len = seg_valid - q * a.b < a.b ? seg_valid - q * a.b : a.b;
      a.scales[s0 / a.b + q] = ec_finish_scale(sh[q * a.b], a.op, len);
    }
    for (int tid = 0; tid < nt; ++tid) {
      ec_i64 g = s0 / 32 + tid;
      if (g * 32 < a.n) ec_encode_group<T, W, SIGN>(a, g, pv.data() + (size_t)tid * 32);
    }
  }
}

// Replays ec_scale_body for every bucket, then ec_encode_groups_body for every group.
template <typename T, int W, bool SIGN>
static void replay_groups(const EcEncode<T>& a) {
  ec_i64 nb = (a.n + a.b - 1) / a.b;
  ec_i64 bp = ec_next_pow2(a.b);
  ec_i64 tn = bp < EC_SCALE_THREADS ? bp : EC_SCALE_THREADS;
  std::vector<double> sh(EC_SCALE_THREADS);
  for (ec_i64 k = 0; k < nb; ++k) {
    for (ec_i64 t = 0; t < tn; ++t) sh[t] = ec_strided_partial<T>(a, k, t, tn, bp / tn);
    for (ec_i64 h = tn >> 1; h >= 1; h >>= 1)
      for (ec_i64 t = 0; t < h; ++t) sh[t] = ec_combine(sh[t], sh[t + h], a.op);
    ec_i64 len = a.n - k * a.b < a.b ? a.n - k * a.b : a.b;
    a.scales[k] = ec_finish_scale(sh[0], a.op, len);
  }
  T pv[32];
  for (ec_i64 g = 0; g * 32 < a.n; ++g) {
    for (int j = 0; j < 32; ++j) pv[j] = g * 32 + j < a.n ? a.input(g * 32 + j) : (T)0;
    ec_encode_group<T, W, SIGN>(a, g, pv);
  }
}

template <typename T, int W, bool SIGN>
static void encode_w(EcEncode<T>& a, bool fused) {
  if (fused) replay_fused<T, W, SIGN>(a);
  else replay_groups<T, W, SIGN>(a);
}

template <typename T>
static void encode(char** a) {
  std::string codec = a[0], path = a[1];
  int wsel = atoi(a[2]);
  EcEncode<T> e;
  e.n = atoll(a[3]);
  e.b = atoll(a[4]);
  e.s = atoi(a[5]);
  e.op = atoi(a[6]);
  e.stochastic = atoi(a[7]);
  e.w = atoi(a[8]);
  e.key = u64arg(a[9]);
  e.stream = u64arg(a[10]);
  int ef = atoi(a[11]);
  e.alpha = (T)strtod(a[12], nullptr);
  e.beta = (T)strtod(a[13], nullptr);
  e.plain = ef == 1;
  std::vector<unsigned char> in = read_all();
  size_t need = (size_t)e.n * sizeof(T) * (ef ? 2 : 1);
  if (in.size() != need) {
    fprintf(stderr, "encode: got %zu input bytes, expected %zu\n", in.size(), need);
    exit(2);
  }
  std::vector<T> x(e.n), h(ef ? e.n : 0), q(e.n), hout(ef ? e.n : 0);
  memcpy(x.data(), in.data(), e.n * sizeof(T));
  if (ef) memcpy(h.data(), in.data() + e.n * sizeof(T), e.n * sizeof(T));
  ec_i64 nb = (e.n + e.b - 1) / e.b;
  std::vector<float> scales(nb);
  e.code_nbytes = (e.n * e.w + 7) / 8;
  std::vector<ec_u8> codes(e.code_nbytes + 4, 0xAB);  // canary past the end
  e.x = x.data();
  e.h = ef ? h.data() : nullptr;
  e.h_out = ef ? hout.data() : nullptr;
  e.q_out = q.data();
  e.scales = scales.data();
  e.codes = codes.data();
  bool fused = path == "fused";
  if (codec == "sign") encode_w<T, 1, true>(e, fused);
  else if (wsel == 2) encode_w<T, 2, false>(e, fused);
  else if (wsel == 4) encode_w<T, 4, false>(e, fused);
  else if (wsel == 8) encode_w<T, 8, false>(e, fused);
  else encode_w<T, 0, false>(e, fused);
  for (int i = 0; i < 4; ++i)
    if (codes[e.code_nbytes + i] != 0xAB) {
      fprintf(stderr, "encode wrote past the codes section\n");
      exit(3);
    }
  put(scales.data(), 4 * nb);
  put(codes.data(), e.code_nbytes);
  put(q.data(), e.n * sizeof(T));
  if (ef) put(hout.data(), e.n * sizeof(T));
}

template <typename T, typename A, int W, bool SIGN>
static void decode_w(const EcDecode<T>& d, std::vector<T>& y, A* acc) {
  T buf[32];
  for (ec_i64 g = 0; g * 32 < d.n; ++g) {
    int count = ec_decode_group<T, W, SIGN>(d, g, buf);
    for (int j = 0; j < count; ++j) {
      if (acc) acc[g * 32 + j] = acc[g * 32 + j] + (A)buf[j];
      else y[g * 32 + j] = buf[j];
    }
  }
}

template <typename T, typename A>
static void decode_acc(const EcDecode<T>& d, bool sign, int wsel, std::vector<T>& y, A* acc) {
  if (sign) decode_w<T, A, 1, true>(d, y, acc);
  else if (wsel == 2) decode_w<T, A, 2, false>(d, y, acc);
  else if (wsel == 4) decode_w<T, A, 4, false>(d, y, acc);
  else if (wsel == 8) decode_w<T, A, 8, false>(d, y, acc);
  else decode_w<T, A, 0, false>(d, y, acc);
}

template <typename T>
static void decode(char** a) {
  std::string codec = a[0];
  int wsel = atoi(a[1]);
  EcDecode<T> d;
  d.n = atoll(a[2]);
  d.b = atoll(a[3]);
  d.s = atoi(a[4]);
  d.w = atoi(a[5]);
  std::string acc = a[6];
  ec_i64 nb = (d.n + d.b - 1) / d.b;
  d.code_nbytes = (d.n * d.w + 7) / 8;
  std::vector<unsigned char> in = read_all();
  size_t asize = acc == "f32" ? 4 : acc == "f64" ? 8 : 0;
  if (in.size() != (size_t)(4 * nb + d.code_nbytes + asize * d.n)) {
    fprintf(stderr, "decode: wrong input size %zu\n", in.size());
    exit(2);
  }
  std::vector<float> scales(nb);
  memcpy(scales.data(), in.data(), 4 * nb);
  std::vector<ec_u8> codes(in.begin() + 4 * nb, in.begin() + 4 * nb + d.code_nbytes);
  d.scales = scales.data();
  d.codes = codes.data();
  std::vector<T> y(d.n);
  bool sign = codec == "sign";
  if (acc == "f32") {
    std::vector<float> s(d.n);
    memcpy(s.data(), in.data() + 4 * nb + d.code_nbytes, 4 * d.n);
    decode_acc<T, float>(d, sign, wsel, y, s.data());
    put(s.data(), 4 * d.n);
  } else if (acc == "f64") {
    std::vector<double> s(d.n);
    memcpy(s.data(), in.data() + 4 * nb + d.code_nbytes, 8 * d.n);
    decode_acc<T, double>(d, sign, wsel, y, s.data());
    put(s.data(), 8 * d.n);
  } else {
    decode_acc<T, T>(d, sign, wsel, y, (T*)nullptr);
    put(y.data(), sizeof(T) * d.n);
  }
}

template <typename T, typename K>
static void topkkey(char** a, K (*fn)(T)) {
  ec_i64 n = atoll(a[0]);
  std::vector<unsigned char> in = read_all();
  std::vector<K> keys(n);
  for (ec_i64 i = 0; i < n; ++i) {
    T v;
    memcpy(&v, in.data() + i * sizeof(T), sizeof(T));
    keys[i] = fn(v);
  }
  put(keys.data(), sizeof(K) * n);
}

template <typename K>
static void digits(char** a) {
  ec_i64 n = atoll(a[0]);
  int shift = atoi(a[1]);
  std::vector<unsigned char> in = read_all();
  std::vector<ec_u8> out(n);
  for (ec_i64 i = 0; i < n; ++i) {
    K v;
    memcpy(&v, in.data() + i * sizeof(K), sizeof(K));
    out[i] = (ec_u8)ec_digit<K>(v, shift);
  }
  put(out.data(), n);
}

template <typename T>
static void randkvalue(char** a) {
  ec_i64 n = atoll(a[0]), k = atoll(a[1]);
  int unbiased = atoi(a[2]);
  std::vector<unsigned char> in = read_all();
  std::vector<T> out(k);
  for (ec_i64 j = 0; j < k; ++j) {
    T v;
    memcpy(&v, in.data() + j * sizeof(T), sizeof(T));
    out[j] = ec_randk_value<T>(v, n, k, unbiased);
  }
  put(out.data(), sizeof(T) * k);
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  std::string mode = argv[1];
  char** a = argv + 2;
  bool f64 = argc > 2 && std::string(argv[2]) == "f64";
  if (mode == "philox" && argc == 6) philox(a);
  else if (mode == "encode" && argc == 17) f64 ? encode<double>(a + 1) : encode<float>(a + 1);
  else if (mode == "decode" && argc == 10) f64 ? decode<double>(a + 1) : decode<float>(a + 1);
  else if (mode == "topkkey" && argc == 4) {
    if (f64) topkkey<double, ec_u64>(a + 1, ec_topk_key_f64);
    else topkkey<float, ec_u32>(a + 1, ec_topk_key_f32);
  } else if (mode == "randkkey" && argc == 5) {
    ec_i64 n = atoll(a[0]);
    std::vector<ec_u32> keys(n);
    for (ec_i64 blk = 0; blk * 4 < n; ++blk) ec_randk_keys_block(n, u64arg(a[1]), u64arg(a[2]), blk, keys.data());
    put(keys.data(), 4 * n);
  } else if (mode == "digits" && argc == 5) {
    if (std::string(a[0]) == "u64") digits<ec_u64>(a + 1);
    else digits<ec_u32>(a + 1);
  } else if (mode == "randkvalue" && argc == 6) {
    f64 ? randkvalue<double>(a + 1) : randkvalue<float>(a + 1);
  } else {
    fprintf(stderr, "harness: bad arguments for mode %s (%d args)\n", mode.c_str(), argc);
    return 2;
  }
  return 0;
}
