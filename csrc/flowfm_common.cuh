// FlowFM CUDA kernels: device-side helpers shared by every kernel file.
//
// This header is device-only and self-contained so that the same sources compile two ways:
//   * by nvcc, into the pybind11 module flowfm_kernels._C (the .cu files add host launchers under
//     `#if !defined(__CUDACC_RTC__) && !defined(FLOWFM_KERNELS_ONLY)`), and
//   * by NVRTC through CuPy (flowfm_kernels/cuda/_cupy_jit.py), which sees only the kernels.
// So: no standard-library headers here, only cuda_fp16.h / cuda_bf16.h (NVRTC finds them with -I<cuda>/include).
// A third consumer, csrc/testing/cpu_emulation.h, compiles the kernels as host C++ (FLOWFM_KERNELS_ONLY) to test
// their logic on machines without a GPU.
//
// Conventions used by all kernels:
//   * storage types T in {float, __half, __nv_bfloat16}; every computation is in float32;
//   * "vec" paths move 4 elements per access (16 B for float, 8 B for the 16-bit types); the host enables them
//     only when every pointer is aligned to 4 * sizeof(T) and every per-row / per-sample base offset is a
//     multiple of 4 elements;
//   * reductions are deterministic: fixed thread-to-element assignment, fixed shuffle trees, fixed merge order,
//     and no floating-point atomics anywhere.
#ifndef FLOWFM_COMMON_CUH
#define FLOWFM_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace flowfm {

// Dynamic shared memory declaration; overridable so that the kernels also compile for the host emulation used by the
// CPU tests (csrc/testing/cpu_emulation.h).
#ifndef FLOWFM_EXTERN_SHARED
#define FLOWFM_EXTERN_SHARED(type, name) extern __shared__ type name[]
#endif

constexpr int kWarpSize = 32;
constexpr int kThreads = 256;  // threads per block of every kernel (a multiple of the warp size)
constexpr int kVec = 4;        // elements per vector access
constexpr unsigned int kFullMask = 0xffffffffu;

// ------------------------------------------------------------------------------------------------ conversions
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// 16-bit payloads <-> float (round to nearest even on the way down, like torch's casts)
__device__ __forceinline__ float half_bits_to_f32(unsigned int bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xffffu)));
}
__device__ __forceinline__ unsigned int f32_to_half_bits(float x) {
  return static_cast<unsigned int>(__half_as_ushort(__float2half_rn(x)));
}
__device__ __forceinline__ float bf16_bits_to_f32(unsigned int bits) { return __uint_as_float((bits & 0xffffu) << 16); }
__device__ __forceinline__ unsigned int f32_to_bf16_bits(float x) {
  return static_cast<unsigned int>(__bfloat16_as_ushort(__float2bfloat16_rn(x)));
}

// ------------------------------------------------------------------------------------------------ vector I/O
// p must be aligned to 4 * sizeof(T) bytes.
__device__ __forceinline__ void load4(const float* p, float (&v)[kVec]) {
  const float4 q = *reinterpret_cast<const float4*>(p);
  v[0] = q.x;
  v[1] = q.y;
  v[2] = q.z;
  v[3] = q.w;
}
__device__ __forceinline__ void load4(const __half* p, float (&v)[kVec]) {
  const uint2 q = *reinterpret_cast<const uint2*>(p);
  v[0] = half_bits_to_f32(q.x);
  v[1] = half_bits_to_f32(q.x >> 16);
  v[2] = half_bits_to_f32(q.y);
  v[3] = half_bits_to_f32(q.y >> 16);
}
__device__ __forceinline__ void load4(const __nv_bfloat16* p, float (&v)[kVec]) {
  const uint2 q = *reinterpret_cast<const uint2*>(p);
  v[0] = bf16_bits_to_f32(q.x);
  v[1] = bf16_bits_to_f32(q.x >> 16);
  v[2] = bf16_bits_to_f32(q.y);
  v[3] = bf16_bits_to_f32(q.y >> 16);
}

__device__ __forceinline__ void store4(float* p, const float (&v)[kVec]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store4(__half* p, const float (&v)[kVec]) {
  uint2 q;
  q.x = f32_to_half_bits(v[0]) | (f32_to_half_bits(v[1]) << 16);
  q.y = f32_to_half_bits(v[2]) | (f32_to_half_bits(v[3]) << 16);
  *reinterpret_cast<uint2*>(p) = q;
}
__device__ __forceinline__ void store4(__nv_bfloat16* p, const float (&v)[kVec]) {
  uint2 q;
  q.x = f32_to_bf16_bits(v[0]) | (f32_to_bf16_bits(v[1]) << 16);
  q.y = f32_to_bf16_bits(v[2]) | (f32_to_bf16_bits(v[3]) << 16);
  *reinterpret_cast<uint2*>(p) = q;
}

template <typename T>
__device__ __forceinline__ float load1(const T* p) {
  return to_f32(*p);
}
template <typename T>
__device__ __forceinline__ void store1(T* p, float x) {
  *p = from_f32<T>(x);
}

// ------------------------------------------------------------------------------------------------ reductions
// Sum over the warp; the total is valid in lane 0 (fixed tree: deterministic).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullMask, v, offset);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullMask, v, offset);
  return v;
}

// Sum over the block, returned to every thread. `scratch` holds >= 32 values in shared memory. Every thread of
// the block must call it (it synchronises). blockDim.x must be a multiple of 32.
template <typename F>
__device__ __forceinline__ F block_sum(F v, F* scratch) {
  const int lane = threadIdx.x & (kWarpSize - 1);
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  v = warp_sum(v);
  __syncthreads();  // the previous use of scratch is over
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < num_warps ? scratch[lane] : F(0);
    v = warp_sum(v);
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  return scratch[0];
}

// Running (count, mean, M2) of a set of values; merged with Chan et al.'s pairwise formula.
struct Welford {
  float n;
  float mean;
  float m2;
};

__device__ __forceinline__ Welford welford_empty() {
  Welford w;
  w.n = 0.f;
  w.mean = 0.f;
  w.m2 = 0.f;
  return w;
}

__device__ __forceinline__ Welford welford_merge(const Welford& a, const Welford& b) {
  const float n = a.n + b.n;
  if (n == 0.f) return a;
  const float delta = b.mean - a.mean;
  const float wb = b.n / n;
  Welford r;
  r.n = n;
  r.mean = a.mean + delta * wb;
  r.m2 = a.m2 + b.m2 + delta * delta * a.n * wb;
  return r;
}

__device__ __forceinline__ Welford welford_push(Welford a, float x) {
  a.n += 1.f;
  const float delta = x - a.mean;
  a.mean += delta / a.n;
  a.m2 += delta * (x - a.mean);
  return a;
}

// Exact (two-pass) statistics of 4 values, merged into the running state: one division per 4 elements.
__device__ __forceinline__ Welford welford_push4(const Welford& a, const float (&v)[kVec]) {
  Welford b;
  b.n = 4.f;
  b.mean = ((v[0] + v[1]) + (v[2] + v[3])) * 0.25f;
  const float d0 = v[0] - b.mean, d1 = v[1] - b.mean, d2 = v[2] - b.mean, d3 = v[3] - b.mean;
  b.m2 = (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
  return welford_merge(a, b);
}

// Merge over the warp; the result is valid in lane 0.
__device__ __forceinline__ Welford warp_welford(Welford w) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    Welford o;
    o.n = __shfl_down_sync(kFullMask, w.n, offset);
    o.mean = __shfl_down_sync(kFullMask, w.mean, offset);
    o.m2 = __shfl_down_sync(kFullMask, w.m2, offset);
    w = welford_merge(w, o);
  }
  return w;
}

// Merge over the block; the result is valid in thread 0. `scratch` holds >= 32 entries in shared memory.
__device__ __forceinline__ Welford block_welford(Welford w, Welford* scratch) {
  const int lane = threadIdx.x & (kWarpSize - 1);
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  w = warp_welford(w);
  __syncthreads();
  if (lane == 0) scratch[warp] = w;
  __syncthreads();
  if (warp == 0) {
    w = lane < num_warps ? scratch[lane] : welford_empty();
    w = warp_welford(w);
  }
  return w;
}

// ------------------------------------------------------------------------------------------------ activations
__device__ __forceinline__ float silu_f(float z) { return z / (1.f + expf(-z)); }

// d silu(z) / dz = sigmoid(z) * (1 + z * (1 - sigmoid(z)))
__device__ __forceinline__ float dsilu_f(float z) {
  const float s = 1.f / (1.f + expf(-z));
  return s * (1.f + z * (1.f - s));
}

}  // namespace flowfm

#endif  // FLOWFM_COMMON_CUH
