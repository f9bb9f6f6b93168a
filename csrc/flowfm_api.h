// FlowFM CUDA kernels: the host API of flowfm_kernels._C (plain C++: no CUDA and no torch headers).
//
// Every function takes raw device pointers as integers (std::uintptr_t; 0 means "absent" where an argument is
// optional), element counts, dtype codes (see DType) and the CUDA stream as an integer
// (torch.cuda.current_stream().cuda_stream). Kernels run on the CUDA device that is current for the calling thread
// (the caller makes the tensors' device current) and are launched asynchronously on `stream`.
// Argument errors throw std::invalid_argument (Python ValueError); launch errors throw std::runtime_error (Python
// RuntimeError) naming the kernel.
//
// The launch plans (gn_fwd_plan, fm_loss_chunks, ...) are header-only so that the binding, the launchers and the
// tests see the same numbers; flowfm_kernels/cuda/_cupy_jit.py mirrors them for the NVRTC JIT path.
#ifndef FLOWFM_API_H
#define FLOWFM_API_H

#include <cstdint>

namespace flowfm {

enum DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };
enum Reduction : int { kReduceMean = 0, kReducePerSample = 1 };

// Dynamic shared memory a kernel may use without opting in to more (48 KiB minus static shared memory headroom).
constexpr long long kSmemBudgetBytes = 46 * 1024;
// Elementwise grids: blocks along x are capped (the kernels grid-stride) and samples along y are capped likewise.
constexpr long long kMaxGridX = 65535;
constexpr long long kMaxGridY = 65535;
// A GN chunk (split path) and an FM-loss chunk are at least / exactly this many elements.
constexpr long long kGnMinChunk = 2048;
// Groups up to this size always take the fused path (one block per group is fast enough; fewer launches).
constexpr long long kGnFusedMaxElems = 16384;
constexpr long long kFmLossChunk = 4096;

inline long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// ----------------------------------------------------------------------------------------- GroupNorm + FiLM + SiLU
// Launch plan of the forward for h of shape (B, C, L) with G groups on a device with `num_sms` SMs.
//   fused: one block per (b, g) computes the statistics and applies (group cached in shared memory when
//          `cache`: one read of h; else a second read); no workspace.
//   split: (B*G*chunks) blocks write per-chunk (n, mean, M2) to the workspace, one thread per (b, g) merges them in
//          chunk order, then (B*G*chunks) blocks apply. Used when there are too few groups to fill the GPU.
struct GnPlan {
  bool fused;
  bool cache;
  long long chunks;       // chunks per group (split path and backward)
  long long chunk_elems;  // elements per chunk (a multiple of 4)
  long long smem_bytes;   // dynamic shared memory of the fused kernel
  long long workspace_bytes;
};

inline void gn_chunking(long long BG, long long N, int num_sms, long long* chunks, long long* chunk_elems) {
  const long long target_blocks = 4LL * (num_sms > 0 ? num_sms : 1);
  const long long max_chunks = ceil_div(N, kGnMinChunk) > 0 ? ceil_div(N, kGnMinChunk) : 1;
  long long c = ceil_div(target_blocks, BG > 0 ? BG : 1);
  if (c < 1) c = 1;
  if (c > max_chunks) c = max_chunks;
  long long e = ceil_div(ceil_div(N, c), 4) * 4;
  if (e < 4) e = 4;
  *chunk_elems = e;
  *chunks = ceil_div(N, e) > 0 ? ceil_div(N, e) : 1;
}

inline GnPlan gn_fwd_plan(long long B, long long C, long long L, long long G, int num_sms) {
  GnPlan p;
  const long long Cg = C / G;
  const long long N = Cg * L;
  const long long BG = B * G;
  const long long coef_bytes = ceil_div(2 * Cg, 4) * 4 * 4;  // 2 Cg floats, padded to 16 bytes
  const bool fused_ok = coef_bytes <= kSmemBudgetBytes;
  p.cache = fused_ok && coef_bytes + N * 4 <= kSmemBudgetBytes;
  gn_chunking(BG, N, num_sms, &p.chunks, &p.chunk_elems);
  p.fused = fused_ok && (p.chunks == 1 || N <= kGnFusedMaxElems || BG >= 2LL * num_sms);
  if (p.fused) {
    p.smem_bytes = coef_bytes + (p.cache ? N * 4 : 0);
    p.workspace_bytes = 0;
  } else {
    p.cache = false;
    p.smem_bytes = 0;
    p.workspace_bytes = BG * p.chunks * 3 * 4;  // (n, mean, M2) float32 per chunk
  }
  return p;
}

// dgamma / dbeta of the backward: the batch is cut into chunks of kGnParamRows rows; block (chunk, 32-channel
// tile) sums its chunk (phase 1, partials to the workspace), then one thread per channel adds the chunk partials in
// chunk order (phase 2). The cut depends on B only (not on the GPU), so the sums are the same on every device.
constexpr long long kGnParamRows = 32;
constexpr long long kGnParamTile = 32;  // channels per phase-1 block (one per lane)
inline long long gn_param_chunks(long long B) { return B > 0 ? ceil_div(B, kGnParamRows) : 1; }
inline long long gn_param_tiles(long long C) { return C > 0 ? ceil_div(C, kGnParamTile) : 1; }

// Workspace of the backward (float32): per-(b, c) sums S1 = sum_l dz and S2 = sum_l dz * xhat (2 B C values),
// then the (chunk, c) partials of dgamma and dbeta (2 gn_param_chunks(B) C values).
inline long long gn_bwd_workspace_bytes(long long B, long long C) {
  return (2 * B * C + 2 * gn_param_chunks(B) * C) * 4;
}

// SM count of the current device (cached per device).
int current_device_sm_count();
// Workspace bytes gn_film_silu_fwd needs for this shape on the current device.
long long gn_fwd_workspace_bytes(long long B, long long C, long long L, long long G);

// y = SiLU((xhat * gamma + beta) * (1 + scale) + shift), xhat = (h - mean_bg) * rstd_bg.
// h, y: (B, C, L) of `dtype`, contiguous. gamma, beta: (C,) float32 or 0; scale, shift: (B, C) float32 or 0.
// mean, rstd: (B, G) float32 outputs. workspace: gn_fwd_workspace_bytes(...) bytes (0 / null when that is 0).
void gn_film_silu_fwd(std::uintptr_t h, std::uintptr_t gamma, std::uintptr_t beta, std::uintptr_t scale,
                      std::uintptr_t shift, std::uintptr_t y, std::uintptr_t mean, std::uintptr_t rstd,
                      std::uintptr_t workspace, long long workspace_bytes, long long B, long long C, long long L,
                      long long G, double eps, int dtype, std::uintptr_t stream);

// Backward of gn_film_silu_fwd from dy (B, C, L) of `dtype` and the saved h, parameters, mean and rstd.
// Outputs (each optional: 0 skips it): dh (B, C, L) of `dtype`; dgamma, dbeta (C,) float32; dscale, dshift (B, C)
// float32. workspace: gn_bwd_workspace_bytes(B, C) bytes. Deterministic (no atomics).
void gn_film_silu_bwd(std::uintptr_t dy, std::uintptr_t h, std::uintptr_t gamma, std::uintptr_t beta,
                      std::uintptr_t scale, std::uintptr_t shift, std::uintptr_t mean, std::uintptr_t rstd,
                      std::uintptr_t dh, std::uintptr_t dgamma, std::uintptr_t dbeta, std::uintptr_t dscale,
                      std::uintptr_t dshift, std::uintptr_t workspace, long long workspace_bytes, long long B,
                      long long C, long long L, long long G, int dtype, std::uintptr_t stream);

// ----------------------------------------------------------------------------------------- flow-matching loss
inline long long fm_loss_chunks(long long N) { return ceil_div(N, kFmLossChunk) > 0 ? ceil_div(N, kFmLossChunk) : 1; }
// Per-block partial sums (float32), B * chunks of them.
inline long long fm_loss_workspace_bytes(long long B, long long N) { return B * fm_loss_chunks(N) * 4; }

// v, x0, x1: (B, N) with N = C * L, contiguous; v of dtype_v, x0 and x1 of dtype_x. u = x1 - (1 - sigma_min) x0.
// loss (float32): 1 value ("mean": sum (v - u)^2 / (B N)) or B values ("per_sample": sum over N / N).
// grad (float32, (B, N), optional): dL/dv for an upstream gradient of 1, i.e. 2 (v - u) / (B N) or 2 (v - u) / N.
void fm_loss_fwd(std::uintptr_t v, std::uintptr_t x0, std::uintptr_t x1, std::uintptr_t grad, std::uintptr_t loss,
                 std::uintptr_t workspace, long long workspace_bytes, long long B, long long N, double sigma_min,
                 int reduction, int dtype_v, int dtype_x, std::uintptr_t stream);

// out = (1 - (1 - sigma_min) t_b) x0 + t_b x1; x0, x1, out (B, N) of `dtype`; t (B,) float32.
void interpolate(std::uintptr_t x0, std::uintptr_t x1, std::uintptr_t t, std::uintptr_t out, long long B,
                 long long N, double sigma_min, int dtype, std::uintptr_t stream);

// ----------------------------------------------------------------------------------------- ODE steps
// g(v, v_null) = v_null + w (v - v_null), or v when v_null is 0. x, out: (B, N) of dtype_x; velocities: (B, N) of
// dtype_v; dt: (B,) float32. out may be x (in place) or any velocity input (same index read before written).
void euler_step(std::uintptr_t x, std::uintptr_t v, std::uintptr_t v_null, std::uintptr_t dt, std::uintptr_t out,
                long long B, long long N, double guidance, int dtype_x, int dtype_v, std::uintptr_t stream);
void heun_correct(std::uintptr_t x, std::uintptr_t v1, std::uintptr_t v2, std::uintptr_t v1_null,
                  std::uintptr_t v2_null, std::uintptr_t dt, std::uintptr_t out, long long B, long long N,
                  double guidance, int dtype_x, int dtype_v, std::uintptr_t stream);
void rk4_combine(std::uintptr_t x, std::uintptr_t k1, std::uintptr_t k2, std::uintptr_t k3, std::uintptr_t k4,
                 std::uintptr_t dt, std::uintptr_t out, long long B, long long N, int dtype_x, int dtype_v,
                 std::uintptr_t stream);
// out = v_null + w (v - v_null) over n elements of `dtype` (out may alias v or v_null).
void guidance_combine(std::uintptr_t v, std::uintptr_t v_null, std::uintptr_t out, long long n, double guidance,
                      int dtype, std::uintptr_t stream);

}  // namespace flowfm

#endif  // FLOWFM_API_H
