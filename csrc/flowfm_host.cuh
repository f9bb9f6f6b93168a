// FlowFM CUDA kernels: host-side helpers of the launchers (nvcc only; never seen by NVRTC).
#ifndef FLOWFM_HOST_CUH
#define FLOWFM_HOST_CUH

#ifdef __CUDACC_RTC__
#error "flowfm_host.cuh is host code: it must not be compiled by NVRTC"
#endif

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "flowfm_api.h"
#include "flowfm_common.cuh"

namespace flowfm {
namespace host {

[[noreturn]] inline void fail_arg(const char* fn, const std::string& what) {
  throw std::invalid_argument(std::string("flowfm_kernels._C.") + fn + ": " + what);
}

inline void require(bool ok, const char* fn, const std::string& what) {
  if (!ok) fail_arg(fn, what);
}

inline void require_ptr(std::uintptr_t p, const char* fn, const char* name) {
  if (p == 0) fail_arg(fn, std::string(name) + " is a null pointer");
}

inline void require_positive(long long v, const char* fn, const char* name) {
  if (v <= 0) fail_arg(fn, std::string(name) + " must be positive, got " + std::to_string(v));
}

// A workspace of `have` bytes must hold the `need` bytes that `sizer` (the *_workspace_bytes() function) reports.
inline void require_workspace(long long have, long long need, const char* fn, const char* sizer) {
  if (have < need)
    fail_arg(fn, "workspace of " + std::to_string(have) + " bytes is smaller than the " + std::to_string(need) +
                     " bytes " + sizer + "() asks for");
}

inline void require_dtype(int code, const char* fn, const char* name) {
  if (code != kFloat32 && code != kFloat16 && code != kBFloat16)
    fail_arg(fn, std::string(name) + " = " + std::to_string(code) +
                     " is not a dtype code (0 = float32, 1 = float16, 2 = bfloat16)");
}

inline int dtype_size(int code) { return code == kFloat32 ? 4 : 2; }

// Vector path: every pointer aligned to 4 elements and every row/sample base a multiple of 4 elements.
inline bool aligned(std::uintptr_t p, int bytes) { return p % static_cast<std::uintptr_t>(bytes) == 0; }

// "flowfm::name<T1, T2>" for error messages (the same spelling as the NVRTC name expressions).
template <typename... Ts>
inline std::string kernel_name(const char* name);

// Launch errors -> std::runtime_error naming the kernel (Python RuntimeError). The name is built only on error.
template <typename... Ts>
inline void check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("flowfm_kernels._C: launching ") + kernel_name<Ts...>(kernel) +
                             " failed: " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("flowfm_kernels._C: ") + what + " failed: " + cudaGetErrorName(err) +
                             ": " + cudaGetErrorString(err));
}

inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

template <typename T>
inline T* as_ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

template <typename T>
struct TypeName;
template <>
struct TypeName<float> {
  static constexpr const char* value = "float";
};
template <>
struct TypeName<__half> {
  static constexpr const char* value = "__half";
};
template <>
struct TypeName<__nv_bfloat16> {
  static constexpr const char* value = "__nv_bfloat16";
};

template <typename... Ts>
inline std::string kernel_name(const char* name) {
  std::string s = std::string("flowfm::") + name;
  if constexpr (sizeof...(Ts) > 0) {
    const char* names[] = {TypeName<Ts>::value...};
    s += "<";
    for (const char* n : names) s += (s.back() == '<' ? "" : ", ") + std::string(n);
    s += ">";
  }
  return s;
}

// Calls f(T{}) with T the storage type of `code` (validated beforehand).
template <typename F>
inline void dispatch_dtype(int code, F&& f) {
  switch (code) {
    case kFloat32:
      f(float{});
      break;
    case kFloat16:
      f(__half{});
      break;
    case kBFloat16:
      f(__nv_bfloat16{});
      break;
    default:
      throw std::invalid_argument("flowfm_kernels._C: unknown dtype code " + std::to_string(code));
  }
}

// Grid of the per-sample elementwise kernels: x over `units` (vectors or scalars) of one sample, y over samples.
inline dim3 per_sample_grid(long long units, long long B) {
  long long gx = ceil_div(units, kThreads);
  if (gx < 1) gx = 1;
  if (gx > kMaxGridX) gx = kMaxGridX;
  long long gy = B < kMaxGridY ? B : kMaxGridY;
  return dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), 1);
}

}  // namespace host
}  // namespace flowfm

#endif  // FLOWFM_HOST_CUH
