// GroupNorm + FiLM + SiLU, forward and backward (the memory-bound tail of the velocity network's conv block).
//
//   y[b, c, l] = SiLU( (xhat[b, c, l] * gamma[c] + beta[c]) * (1 + scale[b, c]) + shift[b, c] )
//   xhat       = (h - mean[b, g]) * rstd[b, g],   rstd = 1 / sqrt(var + eps),  biased var over the C/G channels
//                of group g and all L positions (exactly torch.nn.functional.group_norm).
//
// Written as z = xhat * a[b, c] + k[b, c] with a = gamma (1 + scale), k = beta (1 + scale) + shift.
// h is (B, C, L) contiguous, so group (b, g) is the contiguous span of N = (C/G) L elements at offset (b G + g) N.
//
// Backward, with dz = dy * SiLU'(z), per row (b, c): S1 = sum_l dz, S2 = sum_l dz xhat; then
//   dshift[b, c] = S1,  dscale[b, c] = gamma S2 + beta S1,
//   dgamma[c] = sum_b (1 + scale[b, c]) S2[b, c],  dbeta[c] = sum_b (1 + scale[b, c]) S1[b, c]  (batch chunks of
//               kGnParamRows rows summed in parallel, then the chunk sums in chunk order),
//   dh = rstd (dz a - m1 - xhat m2),  m1 = (1/N) sum_{c in g} a S1,  m2 = (1/N) sum_{c in g} a S2.
// Every sum has a fixed order (warp trees, fixed loops): results are bitwise reproducible, no atomics.
#include "flowfm_common.cuh"

namespace flowfm {

struct GnCoef {
  float a;  // multiplies xhat
  float k;  // added
};

// gamma, beta: (C,) or null; scale, shift: (B, C) or null. bc = b * C + c.
__device__ __forceinline__ GnCoef gn_coef(const float* gamma, const float* beta, const float* scale,
                                          const float* shift, long long bc, int c) {
  const float ga = gamma != nullptr ? gamma[c] : 1.f;
  const float be = beta != nullptr ? beta[c] : 0.f;
  const float s1 = scale != nullptr ? 1.f + scale[bc] : 1.f;
  const float sh = shift != nullptr ? shift[bc] : 0.f;
  GnCoef r;
  r.a = ga * s1;
  r.k = be * s1 + sh;
  return r;
}

__device__ __forceinline__ float gn_y(float x, float mean, float rstd, float a, float k) {
  const float xhat = (x - mean) * rstd;
  return silu_f(xhat * a + k);
}

// Offset (in floats) of the cached group inside the fused kernel's dynamic shared memory: after the 2 Cg
// coefficients, rounded up to 4 floats so that the cache takes 16-byte vector accesses.
__device__ __forceinline__ int gn_cache_offset(int Cg) { return ((2 * Cg + 3) / 4) * 4; }

// ---------------------------------------------------------------------------------------------------- forward
// One block per (b, g): statistics (Welford + Chan merge) then apply. With `cache`, the group is kept in shared
// memory (one read of h); otherwise it is read twice. Dynamic shared memory: 2 Cg coefficients (+ padding + N).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gn_fwd_fused_kernel(const T* __restrict__ h, const float* __restrict__ gamma, const float* __restrict__ beta,
                        const float* __restrict__ scale, const float* __restrict__ shift, T* __restrict__ y,
                        float* __restrict__ mean_out, float* __restrict__ rstd_out, int C, int L, int G, float eps,
                        int cache, int vec) {
  FLOWFM_EXTERN_SHARED(float4, gn_smem4);  // float4: 16-byte aligned for the vector accesses of the cache
  float* gn_smem = reinterpret_cast<float*>(gn_smem4);
  __shared__ Welford red[kWarpSize];
  __shared__ float stats[2];

  const int Cg = C / G;
  const int N = Cg * L;
  const long long bg = blockIdx.x;
  const long long b = bg / G;
  const int g = static_cast<int>(bg - b * G);
  const T* hg = h + bg * N;
  T* yg = y + bg * N;
  float* ca = gn_smem;
  float* ck = gn_smem + Cg;
  float* xs = gn_smem + gn_cache_offset(Cg);

  for (int c = threadIdx.x; c < Cg; c += blockDim.x) {
    const GnCoef co = gn_coef(gamma, beta, scale, shift, b * C + g * Cg + c, g * Cg + c);
    ca[c] = co.a;
    ck[c] = co.k;
  }

  Welford w = welford_empty();
  if (vec) {
    const int n4 = N / kVec;
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
      float v[kVec];
      load4(hg + i * kVec, v);
      if (cache) *reinterpret_cast<float4*>(xs + i * kVec) = make_float4(v[0], v[1], v[2], v[3]);
      w = welford_push4(w, v);
    }
  } else {
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
      const float x = load1(hg + i);
      if (cache) xs[i] = x;
      w = welford_push(w, x);
    }
  }
  w = block_welford(w, red);  // synchronises: the coefficients are visible after it
  if (threadIdx.x == 0) {
    const float var = fmaxf(w.m2 / w.n, 0.f);
    const float rstd = 1.f / sqrtf(var + eps);
    stats[0] = w.mean;
    stats[1] = rstd;
    mean_out[bg] = w.mean;
    rstd_out[bg] = rstd;
  }
  __syncthreads();
  const float mean = stats[0];
  const float rstd = stats[1];

  // Each thread re-reads exactly the cache entries it wrote, so no barrier is needed for `xs`.
  if (vec) {
    const int n4 = N / kVec;
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
      float v[kVec];
      if (cache) {
        const float4 q = *reinterpret_cast<const float4*>(xs + i * kVec);
        v[0] = q.x;
        v[1] = q.y;
        v[2] = q.z;
        v[3] = q.w;
      } else {
        load4(hg + i * kVec, v);
      }
      int c = (i * kVec) / L;
      int l = i * kVec - c * L;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        v[e] = gn_y(v[e], mean, rstd, ca[c], ck[c]);
        if (++l == L) {
          l = 0;
          ++c;
        }
      }
      store4(yg + i * kVec, v);
    }
  } else {
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
      const float x = cache ? xs[i] : load1(hg + i);
      const int c = i / L;
      store1(yg + i, gn_y(x, mean, rstd, ca[c], ck[c]));
    }
  }
}

// Split path, phase 1: block (bg, chunk) writes the chunk's (n, mean, M2) to ws[3 * (bg * chunks + chunk)].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gn_partial_stats_kernel(const T* __restrict__ h, float* __restrict__ ws, int N, int chunk_elems, int chunks,
                            int vec) {
  __shared__ Welford red[kWarpSize];
  const long long blk = blockIdx.x;
  const long long bg = blk / chunks;
  const int chunk = static_cast<int>(blk - bg * chunks);
  const int start = chunk * chunk_elems;
  const int end = min(N, start + chunk_elems);
  const T* hg = h + bg * N;

  Welford w = welford_empty();
  if (vec) {
    for (int i = start + threadIdx.x * kVec; i < end; i += blockDim.x * kVec) {
      float v[kVec];
      load4(hg + i, v);
      w = welford_push4(w, v);
    }
  } else {
    for (int i = start + threadIdx.x; i < end; i += blockDim.x) w = welford_push(w, load1(hg + i));
  }
  w = block_welford(w, red);
  if (threadIdx.x == 0) {
    float* o = ws + 3 * blk;
    o[0] = w.n;
    o[1] = w.mean;
    o[2] = w.m2;
  }
}

// Split path, phase 2: one thread per (b, g) merges its chunks in chunk order.
__global__ void __launch_bounds__(kThreads)
    gn_finalize_stats_kernel(const float* __restrict__ ws, float* __restrict__ mean_out,
                             float* __restrict__ rstd_out, long long BG, int chunks, float eps) {
  const long long bg = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (bg >= BG) return;
  Welford w = welford_empty();
  for (int chunk = 0; chunk < chunks; ++chunk) {
    const float* p = ws + 3 * (bg * chunks + chunk);
    Welford o;
    o.n = p[0];
    o.mean = p[1];
    o.m2 = p[2];
    w = welford_merge(w, o);
  }
  const float var = fmaxf(w.m2 / w.n, 0.f);
  mean_out[bg] = w.mean;
  rstd_out[bg] = 1.f / sqrtf(var + eps);
}

// Split path, phase 3: block (bg, chunk) applies normalisation + FiLM + SiLU to its chunk.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gn_apply_kernel(const T* __restrict__ h, const float* __restrict__ gamma, const float* __restrict__ beta,
                    const float* __restrict__ scale, const float* __restrict__ shift,
                    const float* __restrict__ mean_in, const float* __restrict__ rstd_in, T* __restrict__ y, int C,
                    int L, int G, int chunk_elems, int chunks, int vec) {
  const int Cg = C / G;
  const int N = Cg * L;
  const long long blk = blockIdx.x;
  const long long bg = blk / chunks;
  const int chunk = static_cast<int>(blk - bg * chunks);
  const long long b = bg / G;
  const int g = static_cast<int>(bg - b * G);
  const int start = chunk * chunk_elems;
  const int end = min(N, start + chunk_elems);
  const T* hg = h + bg * N;
  T* yg = y + bg * N;
  const float mean = mean_in[bg];
  const float rstd = rstd_in[bg];
  const long long bc0 = b * C + g * Cg;
  const int c0 = g * Cg;

  int last_c = -1;
  GnCoef co;
  co.a = 0.f;
  co.k = 0.f;
  if (vec) {
    for (int i = start + threadIdx.x * kVec; i < end; i += blockDim.x * kVec) {
      float v[kVec];
      load4(hg + i, v);
      int c = i / L;
      int l = i - c * L;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        if (c != last_c) {
          co = gn_coef(gamma, beta, scale, shift, bc0 + c, c0 + c);
          last_c = c;
        }
        v[e] = gn_y(v[e], mean, rstd, co.a, co.k);
        if (++l == L) {
          l = 0;
          ++c;
        }
      }
      store4(yg + i, v);
    }
  } else {
    for (int i = start + threadIdx.x; i < end; i += blockDim.x) {
      const int c = i / L;
      if (c != last_c) {
        co = gn_coef(gamma, beta, scale, shift, bc0 + c, c0 + c);
        last_c = c;
      }
      store1(yg + i, gn_y(load1(hg + i), mean, rstd, co.a, co.k));
    }
  }
}

// ---------------------------------------------------------------------------------------------------- backward
// One warp per row (b, c): S1, S2 (to the workspace) and dshift / dscale.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gn_bwd_rows_kernel(const T* __restrict__ dy, const T* __restrict__ h, const float* __restrict__ gamma,
                       const float* __restrict__ beta, const float* __restrict__ scale,
                       const float* __restrict__ shift, const float* __restrict__ mean_in,
                       const float* __restrict__ rstd_in, float* __restrict__ s1_out, float* __restrict__ s2_out,
                       float* __restrict__ dscale, float* __restrict__ dshift, long long rows, int C, int L, int G,
                       int vec) {
  const int lane = threadIdx.x & (kWarpSize - 1);
  const long long row = static_cast<long long>(blockIdx.x) * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
  if (row >= rows) return;  // whole warps leave together
  const long long b = row / C;
  const int c = static_cast<int>(row - b * C);
  const int g = c / (C / G);
  const long long bg = b * G + g;
  const float mean = mean_in[bg];
  const float rstd = rstd_in[bg];
  const GnCoef co = gn_coef(gamma, beta, scale, shift, row, c);
  const T* hr = h + row * L;
  const T* dyr = dy + row * L;

  float s1 = 0.f, s2 = 0.f;
  if (vec) {
    for (int i = lane * kVec; i < L; i += kWarpSize * kVec) {
      float x[kVec], d[kVec];
      load4(hr + i, x);
      load4(dyr + i, d);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float xhat = (x[e] - mean) * rstd;
        const float dz = d[e] * dsilu_f(xhat * co.a + co.k);
        s1 += dz;
        s2 += dz * xhat;
      }
    }
  } else {
    for (int i = lane; i < L; i += kWarpSize) {
      const float xhat = (load1(hr + i) - mean) * rstd;
      const float dz = load1(dyr + i) * dsilu_f(xhat * co.a + co.k);
      s1 += dz;
      s2 += dz * xhat;
    }
  }
  s1 = warp_sum(s1);
  s2 = warp_sum(s2);
  if (lane == 0) {
    s1_out[row] = s1;
    s2_out[row] = s2;
    if (dshift != nullptr) dshift[row] = s1;
    if (dscale != nullptr) {
      const float ga = gamma != nullptr ? gamma[c] : 1.f;
      const float be = beta != nullptr ? beta[c] : 0.f;
      dscale[row] = ga * s2 + be * s1;
    }
  }
}

// Block (bg, chunk): group terms m1, m2 (same fixed-order sum in every block of the group), then dh of the chunk.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gn_bwd_dh_kernel(const T* __restrict__ dy, const T* __restrict__ h, const float* __restrict__ gamma,
                     const float* __restrict__ beta, const float* __restrict__ scale,
                     const float* __restrict__ shift, const float* __restrict__ mean_in,
                     const float* __restrict__ rstd_in, const float* __restrict__ s1_in,
                     const float* __restrict__ s2_in, T* __restrict__ dh, int C, int L, int G, int chunk_elems,
                     int chunks, int vec) {
  __shared__ float red[kWarpSize];
  const int Cg = C / G;
  const int N = Cg * L;
  const long long blk = blockIdx.x;
  const long long bg = blk / chunks;
  const int chunk = static_cast<int>(blk - bg * chunks);
  const long long b = bg / G;
  const int g = static_cast<int>(bg - b * G);
  const long long bc0 = b * C + g * Cg;
  const int c0 = g * Cg;

  float p1 = 0.f, p2 = 0.f;
  for (int c = threadIdx.x; c < Cg; c += blockDim.x) {
    const float a = gn_coef(gamma, beta, scale, shift, bc0 + c, c0 + c).a;
    p1 += a * s1_in[bc0 + c];
    p2 += a * s2_in[bc0 + c];
  }
  const float m1 = block_sum(p1, red) / static_cast<float>(N);
  const float m2 = block_sum(p2, red) / static_cast<float>(N);
  const float mean = mean_in[bg];
  const float rstd = rstd_in[bg];

  const int start = chunk * chunk_elems;
  const int end = min(N, start + chunk_elems);
  const T* hg = h + bg * N;
  const T* dyg = dy + bg * N;
  T* dhg = dh + bg * N;

  int last_c = -1;
  GnCoef co;
  co.a = 0.f;
  co.k = 0.f;
  if (vec) {
    for (int i = start + threadIdx.x * kVec; i < end; i += blockDim.x * kVec) {
      float x[kVec], d[kVec];
      load4(hg + i, x);
      load4(dyg + i, d);
      int c = i / L;
      int l = i - c * L;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        if (c != last_c) {
          co = gn_coef(gamma, beta, scale, shift, bc0 + c, c0 + c);
          last_c = c;
        }
        const float xhat = (x[e] - mean) * rstd;
        const float dz = d[e] * dsilu_f(xhat * co.a + co.k);
        x[e] = rstd * (dz * co.a - m1 - xhat * m2);
        if (++l == L) {
          l = 0;
          ++c;
        }
      }
      store4(dhg + i, x);
    }
  } else {
    for (int i = start + threadIdx.x; i < end; i += blockDim.x) {
      const int c = i / L;
      if (c != last_c) {
        co = gn_coef(gamma, beta, scale, shift, bc0 + c, c0 + c);
        last_c = c;
      }
      const float xhat = (load1(hg + i) - mean) * rstd;
      const float dz = load1(dyg + i) * dsilu_f(xhat * co.a + co.k);
      store1(dhg + i, rstd * (dz * co.a - m1 - xhat * m2));
    }
  }
}

// dgamma, dbeta phase 1. Block blk = chunk * tiles + tile covers the channels tile * 32 + lane and the batch rows
// [chunk * rows_per_chunk, (chunk + 1) * rows_per_chunk): warp w adds rows w, w + 8, ... of the chunk in order,
// then warp 0 adds the 8 warp sums in warp order and writes part[2 (chunk C + c) + {0, 1}] = (dgamma, dbeta) terms.
__global__ void __launch_bounds__(kThreads)
    gn_bwd_params_partial_kernel(const float* __restrict__ s1_in, const float* __restrict__ s2_in,
                                 const float* __restrict__ scale, float* __restrict__ part, long long B, int C,
                                 int rows_per_chunk) {
  constexpr int kWarps = kThreads / kWarpSize;
  __shared__ float red_g[kThreads];
  __shared__ float red_b[kThreads];
  const int lane = threadIdx.x & (kWarpSize - 1);
  const int warp = threadIdx.x / kWarpSize;
  const int tiles = (C + kWarpSize - 1) / kWarpSize;
  const long long blk = blockIdx.x;
  const long long chunk = blk / tiles;
  const int c = static_cast<int>(blk - chunk * tiles) * kWarpSize + lane;
  const long long b0 = chunk * rows_per_chunk;
  const long long b1 = min(B, b0 + rows_per_chunk);
  float dg = 0.f, db = 0.f;
  if (c < C) {
    for (long long b = b0 + warp; b < b1; b += kWarps) {
      const long long bc = b * C + c;
      const float s = scale != nullptr ? 1.f + scale[bc] : 1.f;
      dg += s * s2_in[bc];
      db += s * s1_in[bc];
    }
  }
  red_g[threadIdx.x] = dg;
  red_b[threadIdx.x] = db;
  __syncthreads();
  if (warp == 0 && c < C) {
    float g = 0.f, bb = 0.f;
    for (int w = 0; w < kWarps; ++w) {
      g += red_g[w * kWarpSize + lane];
      bb += red_b[w * kWarpSize + lane];
    }
    float* o = part + 2 * (chunk * C + c);
    o[0] = g;
    o[1] = bb;
  }
}

// dgamma, dbeta phase 2: one thread per channel adds the chunk partials in chunk order.
__global__ void __launch_bounds__(kThreads)
    gn_bwd_params_finalize_kernel(const float* __restrict__ part, float* __restrict__ dgamma,
                                  float* __restrict__ dbeta, int C, long long chunks) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float dg = 0.f, db = 0.f;
  for (long long k = 0; k < chunks; ++k) {
    const float* p = part + 2 * (k * C + c);
    dg += p[0];
    db += p[1];
  }
  if (dgamma != nullptr) dgamma[c] = dg;
  if (dbeta != nullptr) dbeta[c] = db;
}

}  // namespace flowfm

// ======================================================================================================== host
#if !defined(__CUDACC_RTC__) && !defined(FLOWFM_KERNELS_ONLY)  // host launchers: nvcc only
#include <atomic>

#include "flowfm_host.cuh"

namespace flowfm {

namespace {
static_assert(kGnParamTile == kWarpSize, "gn_bwd_params_partial_kernel maps one channel to each lane");
constexpr long long kMaxGroupElems = 1LL << 30;  // int indexing inside a group, with headroom for strides
constexpr long long kMaxBlocks = 2147483647LL;
constexpr int kMaxDevices = 64;
std::atomic<int> g_sm_count[kMaxDevices];

void validate_gn_shape(const char* fn, long long B, long long C, long long L, long long G) {
  host::require_positive(B, fn, "B");
  host::require_positive(C, fn, "C");
  host::require_positive(L, fn, "L");
  host::require_positive(G, fn, "num_groups");
  host::require(C % G == 0, fn,
                "channels (" + std::to_string(C) + ") must be divisible by num_groups (" + std::to_string(G) + ")");
  host::require(C <= kMaxGroupElems && (C / G) * L <= kMaxGroupElems, fn,
                "a group of (C / num_groups) * L = " + std::to_string((C / G) * L) + " elements is too large");
  host::require(B * C <= kMaxBlocks * 8 && B * G <= kMaxBlocks, fn, "too many rows / groups for one launch");
}
}  // namespace

int current_device_sm_count() {
  int dev = 0;
  host::check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  if (dev >= 0 && dev < kMaxDevices) {
    const int cached = g_sm_count[dev].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int sms = 0;
  host::check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
                   "cudaDeviceGetAttribute(MultiProcessorCount)");
  if (sms < 1) sms = 1;
  if (dev >= 0 && dev < kMaxDevices) g_sm_count[dev].store(sms, std::memory_order_relaxed);
  return sms;
}

long long gn_fwd_workspace_bytes(long long B, long long C, long long L, long long G) {
  validate_gn_shape("gn_fwd_workspace_bytes", B, C, L, G);
  return gn_fwd_plan(B, C, L, G, current_device_sm_count()).workspace_bytes;
}

void gn_film_silu_fwd(std::uintptr_t h, std::uintptr_t gamma, std::uintptr_t beta, std::uintptr_t scale,
                      std::uintptr_t shift, std::uintptr_t y, std::uintptr_t mean, std::uintptr_t rstd,
                      std::uintptr_t workspace, long long workspace_bytes, long long B, long long C, long long L,
                      long long G, double eps, int dtype, std::uintptr_t stream) {
  const char* fn = "gn_film_silu_fwd";
  validate_gn_shape(fn, B, C, L, G);
  host::require_dtype(dtype, fn, "dtype");
  host::require_ptr(h, fn, "h");
  host::require_ptr(y, fn, "y");
  host::require_ptr(mean, fn, "mean");
  host::require_ptr(rstd, fn, "rstd");
  host::require(eps >= 0.0, fn, "eps must be >= 0");
  const GnPlan p = gn_fwd_plan(B, C, L, G, current_device_sm_count());
  host::require_workspace(workspace_bytes, p.workspace_bytes, fn, "gn_fwd_workspace_bytes");
  if (p.workspace_bytes > 0) host::require_ptr(workspace, fn, "workspace");
  host::require(B * G * p.chunks <= kMaxBlocks, fn, "too many blocks");

  const int vbytes = kVec * host::dtype_size(dtype);
  const int Ci = static_cast<int>(C), Li = static_cast<int>(L), Gi = static_cast<int>(G);
  const int N = (Ci / Gi) * Li;
  const int vec = (N % kVec == 0 && host::aligned(h, vbytes) && host::aligned(y, vbytes)) ? 1 : 0;
  const float epsf = static_cast<float>(eps);
  const cudaStream_t s = host::as_stream(stream);
  const float* gp = host::as_ptr<const float>(gamma);
  const float* bp = host::as_ptr<const float>(beta);
  const float* sp = host::as_ptr<const float>(scale);
  const float* shp = host::as_ptr<const float>(shift);
  float* mp = host::as_ptr<float>(mean);
  float* rp = host::as_ptr<float>(rstd);

  host::dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* hp = host::as_ptr<const T>(h);
    T* yp = host::as_ptr<T>(y);
    if (p.fused) {
      gn_fwd_fused_kernel<T><<<static_cast<unsigned>(B * G), kThreads, static_cast<size_t>(p.smem_bytes), s>>>(
          hp, gp, bp, sp, shp, yp, mp, rp, Ci, Li, Gi, epsf, p.cache ? 1 : 0, vec);
      host::check_launch<T>("gn_fwd_fused_kernel");
    } else {
      float* ws = host::as_ptr<float>(workspace);
      const unsigned blocks = static_cast<unsigned>(B * G * p.chunks);
      const int ce = static_cast<int>(p.chunk_elems), nc = static_cast<int>(p.chunks);
      gn_partial_stats_kernel<T><<<blocks, kThreads, 0, s>>>(hp, ws, N, ce, nc, vec);
      host::check_launch<T>("gn_partial_stats_kernel");
      gn_finalize_stats_kernel<<<static_cast<unsigned>(ceil_div(B * G, kThreads)), kThreads, 0, s>>>(
          ws, mp, rp, B * G, nc, epsf);
      host::check_launch<>("gn_finalize_stats_kernel");
      gn_apply_kernel<T><<<blocks, kThreads, 0, s>>>(hp, gp, bp, sp, shp, mp, rp, yp, Ci, Li, Gi, ce, nc, vec);
      host::check_launch<T>("gn_apply_kernel");
    }
  });
}

void gn_film_silu_bwd(std::uintptr_t dy, std::uintptr_t h, std::uintptr_t gamma, std::uintptr_t beta,
                      std::uintptr_t scale, std::uintptr_t shift, std::uintptr_t mean, std::uintptr_t rstd,
                      std::uintptr_t dh, std::uintptr_t dgamma, std::uintptr_t dbeta, std::uintptr_t dscale,
                      std::uintptr_t dshift, std::uintptr_t workspace, long long workspace_bytes, long long B,
                      long long C, long long L, long long G, int dtype, std::uintptr_t stream) {
  const char* fn = "gn_film_silu_bwd";
  validate_gn_shape(fn, B, C, L, G);
  host::require_dtype(dtype, fn, "dtype");
  host::require_ptr(dy, fn, "dy");
  host::require_ptr(h, fn, "h");
  host::require_ptr(mean, fn, "mean");
  host::require_ptr(rstd, fn, "rstd");
  host::require_ptr(workspace, fn, "workspace");
  host::require_workspace(workspace_bytes, gn_bwd_workspace_bytes(B, C), fn, "gn_bwd_workspace_bytes");

  const int Ci = static_cast<int>(C), Li = static_cast<int>(L), Gi = static_cast<int>(G);
  const int N = (Ci / Gi) * Li;
  const int vbytes = kVec * host::dtype_size(dtype);
  const bool ptrs_aligned = host::aligned(dy, vbytes) && host::aligned(h, vbytes) &&
                            (dh == 0 || host::aligned(dh, vbytes));
  const int vec_rows = (L % kVec == 0 && ptrs_aligned) ? 1 : 0;
  const int vec_groups = (N % kVec == 0 && ptrs_aligned) ? 1 : 0;
  long long chunks = 1, chunk_elems = 4;
  gn_chunking(B * G, N, current_device_sm_count(), &chunks, &chunk_elems);
  host::require(B * G * chunks <= kMaxBlocks, fn, "too many blocks");

  const cudaStream_t s = host::as_stream(stream);
  const float* gp = host::as_ptr<const float>(gamma);
  const float* bp = host::as_ptr<const float>(beta);
  const float* sp = host::as_ptr<const float>(scale);
  const float* shp = host::as_ptr<const float>(shift);
  const float* mp = host::as_ptr<const float>(mean);
  const float* rp = host::as_ptr<const float>(rstd);
  float* s1 = host::as_ptr<float>(workspace);
  float* s2 = s1 + B * C;
  const long long rows = B * C;
  const long long rows_per_block = kThreads / kWarpSize;

  host::dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* dyp = host::as_ptr<const T>(dy);
    const T* hp = host::as_ptr<const T>(h);
    gn_bwd_rows_kernel<T><<<static_cast<unsigned>(ceil_div(rows, rows_per_block)), kThreads, 0, s>>>(
        dyp, hp, gp, bp, sp, shp, mp, rp, s1, s2, host::as_ptr<float>(dscale), host::as_ptr<float>(dshift), rows,
        Ci, Li, Gi, vec_rows);
    host::check_launch<T>("gn_bwd_rows_kernel");
    if (dh != 0) {
      gn_bwd_dh_kernel<T><<<static_cast<unsigned>(B * G * chunks), kThreads, 0, s>>>(
          dyp, hp, gp, bp, sp, shp, mp, rp, s1, s2, host::as_ptr<T>(dh), Ci, Li, Gi, static_cast<int>(chunk_elems),
          static_cast<int>(chunks), vec_groups);
      host::check_launch<T>("gn_bwd_dh_kernel");
    }
  });
  if (dgamma != 0 || dbeta != 0) {
    const long long chunks_b = gn_param_chunks(B);
    float* part = s2 + B * C;
    gn_bwd_params_partial_kernel<<<static_cast<unsigned>(chunks_b * gn_param_tiles(C)), kThreads, 0, s>>>(
        s1, s2, sp, part, B, Ci, static_cast<int>(kGnParamRows));
    host::check_launch<>("gn_bwd_params_partial_kernel");
    gn_bwd_params_finalize_kernel<<<static_cast<unsigned>(ceil_div(C, kThreads)), kThreads, 0, s>>>(
        part, host::as_ptr<float>(dgamma), host::as_ptr<float>(dbeta), Ci, chunks_b);
    host::check_launch<>("gn_bwd_params_finalize_kernel");
  }
}

}  // namespace flowfm
#endif  // host launchers
