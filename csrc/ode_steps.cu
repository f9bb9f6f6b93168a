// Batched ODE-solver updates with per-sample step sizes and classifier-free guidance fused in.
//
//   g(v, v_null) = v_null + w (v - v_null)          (= v when v_null is absent)
//   euler / predictor / midpoint stage:  out = x + dt_b g(v, v_null)
//   heun corrector:                      out = x + dt_b * 0.5 (g(v1, v1_null) + g(v2, v2_null))
//   rk4 combination:                     out = x + dt_b / 6 * (k1 + 2 k2 + 2 k3 + k4)
//   guidance combine:                    out = v_null + w (v - v_null)
//
// x and out have storage type TX, the velocities TV (e.g. an fp32 state driven by a bf16 network); arithmetic is
// fp32 in the order of the eager reference. Each element is read and then written by one thread, so `out` may be
// `x` (in-place update) or one of the velocity inputs: no pointer here is declared __restrict__.
#include "flowfm_common.cuh"

namespace flowfm {

__device__ __forceinline__ float guided(float v, float vn, float w) { return vn + w * (v - vn); }

// Grid-strided loop over the (B, N) elements with the per-sample step dt[b]: calls vec_f(i, dt_b) for each vector of
// 4 elements at flat offset i when `vec`, else scalar_f(i, dt_b) for each element.
template <typename VecF, typename ScalarF>
__device__ __forceinline__ void per_sample_loop(long long B, long long N, const float* __restrict__ dt, int vec,
                                                VecF vec_f, ScalarF scalar_f) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (long long b = blockIdx.y; b < B; b += gridDim.y) {
    const float dtb = dt[b];
    const long long base = b * N;
    if (vec) {
      const long long n4 = N / kVec;
      for (long long j = first; j < n4; j += stride) vec_f(base + j * kVec, dtb);
    } else {
      for (long long j = first; j < N; j += stride) scalar_f(base + j, dtb);
    }
  }
}

template <typename TX, typename TV>
__global__ void __launch_bounds__(kThreads)
    euler_step_kernel(const TX* x, const TV* v, const TV* v_null, const float* __restrict__ dt, TX* out,
                      long long B, long long N, float w, int vec) {
  per_sample_loop(
      B, N, dt, vec,
      [&](long long i, float dtb) {
        float fx[kVec], fv[kVec];
        load4(x + i, fx);
        load4(v + i, fv);
        if (v_null != nullptr) {
          float fn[kVec];
          load4(v_null + i, fn);
#pragma unroll
          for (int e = 0; e < kVec; ++e) fv[e] = guided(fv[e], fn[e], w);
        }
#pragma unroll
        for (int e = 0; e < kVec; ++e) fx[e] = fx[e] + dtb * fv[e];
        store4(out + i, fx);
      },
      [&](long long i, float dtb) {
        float g = load1(v + i);
        if (v_null != nullptr) g = guided(g, load1(v_null + i), w);
        store1(out + i, load1(x + i) + dtb * g);
      });
}

template <typename TX, typename TV>
__global__ void __launch_bounds__(kThreads)
    heun_correct_kernel(const TX* x, const TV* v1, const TV* v2, const TV* v1_null, const TV* v2_null,
                        const float* __restrict__ dt, TX* out, long long B, long long N, float w, int vec) {
  per_sample_loop(
      B, N, dt, vec,
      [&](long long i, float dtb) {
        float fx[kVec], f1[kVec], f2[kVec];
        load4(x + i, fx);
        load4(v1 + i, f1);
        load4(v2 + i, f2);
        if (v1_null != nullptr) {
          float fn[kVec];
          load4(v1_null + i, fn);
#pragma unroll
          for (int e = 0; e < kVec; ++e) f1[e] = guided(f1[e], fn[e], w);
        }
        if (v2_null != nullptr) {
          float fn[kVec];
          load4(v2_null + i, fn);
#pragma unroll
          for (int e = 0; e < kVec; ++e) f2[e] = guided(f2[e], fn[e], w);
        }
#pragma unroll
        for (int e = 0; e < kVec; ++e) fx[e] = fx[e] + dtb * (0.5f * (f1[e] + f2[e]));
        store4(out + i, fx);
      },
      [&](long long i, float dtb) {
        float g1 = load1(v1 + i);
        float g2 = load1(v2 + i);
        if (v1_null != nullptr) g1 = guided(g1, load1(v1_null + i), w);
        if (v2_null != nullptr) g2 = guided(g2, load1(v2_null + i), w);
        store1(out + i, load1(x + i) + dtb * (0.5f * (g1 + g2)));
      });
}

template <typename TX, typename TV>
__global__ void __launch_bounds__(kThreads)
    rk4_combine_kernel(const TX* x, const TV* k1, const TV* k2, const TV* k3, const TV* k4,
                       const float* __restrict__ dt, TX* out, long long B, long long N, int vec) {
  per_sample_loop(
      B, N, dt, vec,
      [&](long long i, float dtb) {
        const float h6 = dtb / 6.f;
        float fx[kVec], a[kVec], c[kVec], d[kVec], e4[kVec];
        load4(x + i, fx);
        load4(k1 + i, a);
        load4(k2 + i, c);
        load4(k3 + i, d);
        load4(k4 + i, e4);
#pragma unroll
        for (int e = 0; e < kVec; ++e) fx[e] = fx[e] + h6 * (((a[e] + 2.f * c[e]) + 2.f * d[e]) + e4[e]);
        store4(out + i, fx);
      },
      [&](long long i, float dtb) {
        const float h6 = dtb / 6.f;
        const float k = ((load1(k1 + i) + 2.f * load1(k2 + i)) + 2.f * load1(k3 + i)) + load1(k4 + i);
        store1(out + i, load1(x + i) + h6 * k);
      });
}

// Flat over n elements (no per-sample factor).
template <typename TV>
__global__ void __launch_bounds__(kThreads)
    guidance_combine_kernel(const TV* v, const TV* v_null, TV* out, long long n, float w, int vec) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec) {
    const long long n4 = n / kVec;
    for (long long j = first; j < n4; j += stride) {
      float fv[kVec], fn[kVec];
      load4(v + j * kVec, fv);
      load4(v_null + j * kVec, fn);
#pragma unroll
      for (int e = 0; e < kVec; ++e) fv[e] = guided(fv[e], fn[e], w);
      store4(out + j * kVec, fv);
    }
  } else {
    for (long long j = first; j < n; j += stride) store1(out + j, guided(load1(v + j), load1(v_null + j), w));
  }
}

}  // namespace flowfm

// ======================================================================================================== host
#if !defined(__CUDACC_RTC__) && !defined(FLOWFM_KERNELS_ONLY)  // host launchers: nvcc only
#include "flowfm_host.cuh"

namespace flowfm {

namespace {

struct StepCheck {
  const char* fn;
  int vx;  // vector bytes of x / out
  int vv;  // vector bytes of the velocities
  bool all_aligned = true;

  void x_like(std::uintptr_t p, const char* name, bool required = true) {
    if (required) host::require_ptr(p, fn, name);
    if (p != 0 && !host::aligned(p, vx)) all_aligned = false;
  }
  void v_like(std::uintptr_t p, const char* name, bool required = true) {
    if (required) host::require_ptr(p, fn, name);
    if (p != 0 && !host::aligned(p, vv)) all_aligned = false;
  }
};

StepCheck begin_step(const char* fn, long long B, long long N, int dtype_x, int dtype_v, std::uintptr_t dt) {
  host::require_positive(B, fn, "B");
  host::require_positive(N, fn, "N (= C * L)");
  host::require_dtype(dtype_x, fn, "dtype_x");
  host::require_dtype(dtype_v, fn, "dtype_v");
  host::require_ptr(dt, fn, "dt");
  return StepCheck{fn, kVec * host::dtype_size(dtype_x), kVec * host::dtype_size(dtype_v)};
}

template <typename F>
void dispatch_pair(int dtype_x, int dtype_v, F&& f) {
  host::dispatch_dtype(dtype_x, [&](auto xtag) {
    host::dispatch_dtype(dtype_v, [&](auto vtag) { f(xtag, vtag); });
  });
}

}  // namespace

void euler_step(std::uintptr_t x, std::uintptr_t v, std::uintptr_t v_null, std::uintptr_t dt, std::uintptr_t out,
                long long B, long long N, double guidance, int dtype_x, int dtype_v, std::uintptr_t stream) {
  StepCheck c = begin_step("euler_step", B, N, dtype_x, dtype_v, dt);
  c.x_like(x, "x");
  c.x_like(out, "out");
  c.v_like(v, "v");
  c.v_like(v_null, "v_null", false);
  const int vec = (N % kVec == 0 && c.all_aligned) ? 1 : 0;
  const dim3 grid = host::per_sample_grid(vec ? N / kVec : N, B);
  const cudaStream_t s = host::as_stream(stream);
  dispatch_pair(dtype_x, dtype_v, [&](auto xtag, auto vtag) {
    using TX = decltype(xtag);
    using TV = decltype(vtag);
    euler_step_kernel<TX, TV><<<grid, kThreads, 0, s>>>(
        host::as_ptr<const TX>(x), host::as_ptr<const TV>(v), host::as_ptr<const TV>(v_null),
        host::as_ptr<const float>(dt), host::as_ptr<TX>(out), B, N, static_cast<float>(guidance), vec);
    host::check_launch<TX, TV>("euler_step_kernel");
  });
}

void heun_correct(std::uintptr_t x, std::uintptr_t v1, std::uintptr_t v2, std::uintptr_t v1_null,
                  std::uintptr_t v2_null, std::uintptr_t dt, std::uintptr_t out, long long B, long long N,
                  double guidance, int dtype_x, int dtype_v, std::uintptr_t stream) {
  StepCheck c = begin_step("heun_correct", B, N, dtype_x, dtype_v, dt);
  c.x_like(x, "x");
  c.x_like(out, "out");
  c.v_like(v1, "v1");
  c.v_like(v2, "v2");
  c.v_like(v1_null, "v1_null", false);
  c.v_like(v2_null, "v2_null", false);
  const int vec = (N % kVec == 0 && c.all_aligned) ? 1 : 0;
  const dim3 grid = host::per_sample_grid(vec ? N / kVec : N, B);
  const cudaStream_t s = host::as_stream(stream);
  dispatch_pair(dtype_x, dtype_v, [&](auto xtag, auto vtag) {
    using TX = decltype(xtag);
    using TV = decltype(vtag);
    heun_correct_kernel<TX, TV><<<grid, kThreads, 0, s>>>(
        host::as_ptr<const TX>(x), host::as_ptr<const TV>(v1), host::as_ptr<const TV>(v2),
        host::as_ptr<const TV>(v1_null), host::as_ptr<const TV>(v2_null), host::as_ptr<const float>(dt),
        host::as_ptr<TX>(out), B, N, static_cast<float>(guidance), vec);
    host::check_launch<TX, TV>("heun_correct_kernel");
  });
}

void rk4_combine(std::uintptr_t x, std::uintptr_t k1, std::uintptr_t k2, std::uintptr_t k3, std::uintptr_t k4,
                 std::uintptr_t dt, std::uintptr_t out, long long B, long long N, int dtype_x, int dtype_v,
                 std::uintptr_t stream) {
  StepCheck c = begin_step("rk4_combine", B, N, dtype_x, dtype_v, dt);
  c.x_like(x, "x");
  c.x_like(out, "out");
  c.v_like(k1, "k1");
  c.v_like(k2, "k2");
  c.v_like(k3, "k3");
  c.v_like(k4, "k4");
  const int vec = (N % kVec == 0 && c.all_aligned) ? 1 : 0;
  const dim3 grid = host::per_sample_grid(vec ? N / kVec : N, B);
  const cudaStream_t s = host::as_stream(stream);
  dispatch_pair(dtype_x, dtype_v, [&](auto xtag, auto vtag) {
    using TX = decltype(xtag);
    using TV = decltype(vtag);
    rk4_combine_kernel<TX, TV><<<grid, kThreads, 0, s>>>(
        host::as_ptr<const TX>(x), host::as_ptr<const TV>(k1), host::as_ptr<const TV>(k2),
        host::as_ptr<const TV>(k3), host::as_ptr<const TV>(k4), host::as_ptr<const float>(dt),
        host::as_ptr<TX>(out), B, N, vec);
    host::check_launch<TX, TV>("rk4_combine_kernel");
  });
}

void guidance_combine(std::uintptr_t v, std::uintptr_t v_null, std::uintptr_t out, long long n, double guidance,
                      int dtype, std::uintptr_t stream) {
  const char* fn = "guidance_combine";
  host::require_positive(n, fn, "n");
  host::require_dtype(dtype, fn, "dtype");
  host::require_ptr(v, fn, "v");
  host::require_ptr(v_null, fn, "v_null");
  host::require_ptr(out, fn, "out");
  const int vb = kVec * host::dtype_size(dtype);
  const int vec = (n % kVec == 0 && host::aligned(v, vb) && host::aligned(v_null, vb) && host::aligned(out, vb))
                      ? 1
                      : 0;
  const dim3 grid = host::per_sample_grid(vec ? n / kVec : n, 1);
  const cudaStream_t s = host::as_stream(stream);
  host::dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    guidance_combine_kernel<T><<<grid, kThreads, 0, s>>>(host::as_ptr<const T>(v), host::as_ptr<const T>(v_null),
                                                         host::as_ptr<T>(out), n, static_cast<float>(guidance), vec);
    host::check_launch<T>("guidance_combine_kernel");
  });
}

}  // namespace flowfm
#endif  // host launchers
