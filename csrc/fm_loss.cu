// Flow-matching loss (conditional OT / rectified flow) and the path interpolation.
//
//   u   = x1 - (1 - s) x0                      (never materialised)
//   L   = sum (v - u)^2 / (B N)   ("mean")      or   sum_n (v - u)^2 / N per sample ("per_sample"),  N = C L
//   dL/dv = 2 (v - u) / (B N)  or  2 (v - u) / N  (for an upstream gradient of 1; written in the same pass)
//   x_t = (1 - (1 - s) t_b) x0 + t_b x1
//
// The loss is a deterministic two-stage reduction: block (chunk, b) writes the fp32 sum of its chunk of sample b
// (fixed thread assignment and fixed shuffle trees), then one block adds the partial sums in a fixed order in fp64.
#include "flowfm_common.cuh"

namespace flowfm {

// grid: x = chunks of one sample (kFmLossChunk elements each), y = samples (grid-strided when B > 65535).
template <typename TV, typename TX>
__global__ void __launch_bounds__(kThreads)
    fm_loss_partial_kernel(const TV* __restrict__ v, const TX* __restrict__ x0, const TX* __restrict__ x1,
                           float* __restrict__ grad, float* __restrict__ partials, long long B, long long N,
                           int chunk_elems, float one_minus_s, float grad_scale, int vec) {
  __shared__ float red[kWarpSize];
  const int chunks = gridDim.x;
  const long long start = static_cast<long long>(blockIdx.x) * chunk_elems;
  const long long end = min(N, start + chunk_elems);
  for (long long b = blockIdx.y; b < B; b += gridDim.y) {  // block-uniform loop: block_sum is safe inside
    const long long base = b * N;
    float acc = 0.f;
    if (vec) {
      for (long long i = start + threadIdx.x * kVec; i < end; i += blockDim.x * kVec) {
        float fv[kVec], f0[kVec], f1[kVec];
        load4(v + base + i, fv);
        load4(x0 + base + i, f0);
        load4(x1 + base + i, f1);
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          const float d = fv[e] - (f1[e] - one_minus_s * f0[e]);
          acc += d * d;
          fv[e] = d * grad_scale;
        }
        if (grad != nullptr) store4(grad + base + i, fv);
      }
    } else {
      for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
        const float d = load1(v + base + i) - (load1(x1 + base + i) - one_minus_s * load1(x0 + base + i));
        acc += d * d;
        if (grad != nullptr) grad[base + i] = d * grad_scale;
      }
    }
    const float total = block_sum(acc, red);
    if (threadIdx.x == 0) partials[b * chunks + blockIdx.x] = total;
  }
}

// One block: per_sample -> out[b] = sum_k partials[b, k] / N; mean -> out[0] = sum_{b,k} partials / (B N).
__global__ void __launch_bounds__(kThreads)
    fm_loss_finalize_kernel(const float* __restrict__ partials, float* __restrict__ out, long long B, int chunks,
                            long long N, int per_sample) {
  __shared__ double red[kWarpSize];
  double acc = 0.0;
  for (long long b = threadIdx.x; b < B; b += blockDim.x) {
    double s = 0.0;
    for (int k = 0; k < chunks; ++k) s += static_cast<double>(partials[b * chunks + k]);
    if (per_sample)
      out[b] = static_cast<float>(s / static_cast<double>(N));
    else
      acc += s;
  }
  if (!per_sample) {
    const double total = block_sum(acc, red);
    if (threadIdx.x == 0) out[0] = static_cast<float>(total / (static_cast<double>(B) * static_cast<double>(N)));
  }
}

// x_t = (1 - (1 - s) t_b) x0 + t_b x1, per-sample t (float32).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    interpolate_kernel(const T* __restrict__ x0, const T* __restrict__ x1, const float* __restrict__ t,
                       T* __restrict__ out, long long B, long long N, float one_minus_s, int vec) {
  for (long long b = blockIdx.y; b < B; b += gridDim.y) {
    const float tb = t[b];
    const float a = 1.f - one_minus_s * tb;
    const long long base = b * N;
    if (vec) {
      const long long n4 = N / kVec;
      for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
           i += static_cast<long long>(gridDim.x) * blockDim.x) {
        float f0[kVec], f1[kVec];
        load4(x0 + base + i * kVec, f0);
        load4(x1 + base + i * kVec, f1);
#pragma unroll
        for (int e = 0; e < kVec; ++e) f0[e] = a * f0[e] + tb * f1[e];
        store4(out + base + i * kVec, f0);
      }
    } else {
      for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < N;
           i += static_cast<long long>(gridDim.x) * blockDim.x)
        store1(out + base + i, a * load1(x0 + base + i) + tb * load1(x1 + base + i));
    }
  }
}

}  // namespace flowfm

// ======================================================================================================== host
#if !defined(__CUDACC_RTC__) && !defined(FLOWFM_KERNELS_ONLY)  // host launchers: nvcc only
#include "flowfm_host.cuh"

namespace flowfm {

void fm_loss_fwd(std::uintptr_t v, std::uintptr_t x0, std::uintptr_t x1, std::uintptr_t grad, std::uintptr_t loss,
                 std::uintptr_t workspace, long long workspace_bytes, long long B, long long N, double sigma_min,
                 int reduction, int dtype_v, int dtype_x, std::uintptr_t stream) {
  const char* fn = "fm_loss_fwd";
  host::require_positive(B, fn, "B");
  host::require_positive(N, fn, "N (= C * L)");
  host::require_dtype(dtype_v, fn, "dtype_v");
  host::require_dtype(dtype_x, fn, "dtype_x");
  host::require(reduction == kReduceMean || reduction == kReducePerSample, fn,
                "reduction code " + std::to_string(reduction) + " is not 0 (mean) or 1 (per_sample)");
  host::require_ptr(v, fn, "v");
  host::require_ptr(x0, fn, "x0");
  host::require_ptr(x1, fn, "x1");
  host::require_ptr(loss, fn, "loss");
  host::require_ptr(workspace, fn, "workspace");
  host::require_workspace(workspace_bytes, fm_loss_workspace_bytes(B, N), fn, "fm_loss_workspace_bytes");
  const long long chunks = fm_loss_chunks(N);
  host::require(chunks <= kMaxGridX, fn, "a sample of N = " + std::to_string(N) + " elements is too large");

  const int vec = (N % kVec == 0 && host::aligned(v, kVec * host::dtype_size(dtype_v)) &&
                   host::aligned(x0, kVec * host::dtype_size(dtype_x)) &&
                   host::aligned(x1, kVec * host::dtype_size(dtype_x)) && host::aligned(grad, kVec * 4))
                      ? 1
                      : 0;
  const bool per_sample = reduction == kReducePerSample;
  const float one_minus_s = static_cast<float>(1.0 - sigma_min);
  const float grad_scale = static_cast<float>(2.0 / (per_sample ? static_cast<double>(N)
                                                                 : static_cast<double>(B) * static_cast<double>(N)));
  const cudaStream_t s = host::as_stream(stream);
  float* partials = host::as_ptr<float>(workspace);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(B < kMaxGridY ? B : kMaxGridY), 1);

  host::dispatch_dtype(dtype_v, [&](auto vtag) {
    using TV = decltype(vtag);
    host::dispatch_dtype(dtype_x, [&](auto xtag) {
      using TX = decltype(xtag);
      fm_loss_partial_kernel<TV, TX><<<grid, kThreads, 0, s>>>(
          host::as_ptr<const TV>(v), host::as_ptr<const TX>(x0), host::as_ptr<const TX>(x1),
          host::as_ptr<float>(grad), partials, B, N, static_cast<int>(kFmLossChunk), one_minus_s, grad_scale, vec);
      host::check_launch<TV, TX>("fm_loss_partial_kernel");
    });
  });
  fm_loss_finalize_kernel<<<1, kThreads, 0, s>>>(partials, host::as_ptr<float>(loss), B, static_cast<int>(chunks),
                                                 N, per_sample ? 1 : 0);
  host::check_launch<>("fm_loss_finalize_kernel");
}

void interpolate(std::uintptr_t x0, std::uintptr_t x1, std::uintptr_t t, std::uintptr_t out, long long B,
                 long long N, double sigma_min, int dtype, std::uintptr_t stream) {
  const char* fn = "interpolate";
  host::require_positive(B, fn, "B");
  host::require_positive(N, fn, "N (= C * L)");
  host::require_dtype(dtype, fn, "dtype");
  host::require_ptr(x0, fn, "x0");
  host::require_ptr(x1, fn, "x1");
  host::require_ptr(t, fn, "t");
  host::require_ptr(out, fn, "out");
  const int vb = kVec * host::dtype_size(dtype);
  const int vec =
      (N % kVec == 0 && host::aligned(x0, vb) && host::aligned(x1, vb) && host::aligned(out, vb)) ? 1 : 0;
  const dim3 grid = host::per_sample_grid(vec ? N / kVec : N, B);
  const float one_minus_s = static_cast<float>(1.0 - sigma_min);
  const cudaStream_t s = host::as_stream(stream);
  host::dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    interpolate_kernel<T><<<grid, kThreads, 0, s>>>(host::as_ptr<const T>(x0), host::as_ptr<const T>(x1),
                                                    host::as_ptr<const float>(t), host::as_ptr<T>(out), B, N,
                                                    one_minus_s, vec);
    host::check_launch<T>("interpolate_kernel");
  });
}

}  // namespace flowfm
#endif  // host launchers
