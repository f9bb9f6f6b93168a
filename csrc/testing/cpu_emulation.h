// Host (CPU) emulation of the part of the CUDA execution model the FlowFM kernels use, for tests on machines
// without a GPU: the kernels of csrc/*.cu compile as plain C++ (FLOWFM_KERNELS_ONLY) and every CUDA thread of a
// block runs on its own OS thread (from a persistent pool). __syncthreads() is a block barrier, __shfl_down_sync()
// exchanges through a per-warp buffer between two warp barriers, __shared__ variables are function statics (blocks
// run one after the other), and dynamic shared memory is a per-launch buffer poisoned with NaN. This checks
// indexing, vector paths, reductions and barrier placement; it says nothing about performance. Used by the tests
// (tests/cuda_emulation.py) only.
#ifndef FLOWFM_CPU_EMULATION_H
#define FLOWFM_CPU_EMULATION_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <barrier>
#include <cmath>  // expf, sqrtf, fmaxf in the global namespace
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define FLOWFM_KERNELS_ONLY 1
#define FLOWFM_EXTERN_SHARED(type, name) type* name = reinterpret_cast<type*>(::flowfm_emu::dynamic_smem())

namespace flowfm_emu {

struct BlockContext {
  explicit BlockContext(unsigned threads)
      : block_barrier(static_cast<std::ptrdiff_t>(threads)), shuffle(threads, 0) {
    for (unsigned w = 0; w < (threads + 31) / 32; ++w) warp_barriers.emplace_back(new std::barrier<>(32));
  }
  std::barrier<> block_barrier;
  std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
  std::vector<std::uint64_t> shuffle;
};

inline thread_local BlockContext* tls_block = nullptr;
inline std::vector<float4> g_dynamic_smem;

inline void* dynamic_smem() { return g_dynamic_smem.data(); }

}  // namespace flowfm_emu

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

inline void __syncthreads() { flowfm_emu::tls_block->block_barrier.arrive_and_wait(); }

template <typename T>
inline T __shfl_down_sync(unsigned /*mask*/, T value, int offset) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t), "shuffle of a type wider than 8 bytes");
  flowfm_emu::BlockContext* ctx = flowfm_emu::tls_block;
  const unsigned t = threadIdx.x;
  const unsigned lane = t & 31u;
  std::uint64_t raw = 0;
  std::memcpy(&raw, &value, sizeof(T));
  ctx->shuffle[t] = raw;
  ctx->warp_barriers[t / 32]->arrive_and_wait();
  T result = value;
  if (lane + static_cast<unsigned>(offset) < 32u) {
    const std::uint64_t other = ctx->shuffle[t - lane + lane + static_cast<unsigned>(offset)];
    std::memcpy(&result, &other, sizeof(T));
  }
  ctx->warp_barriers[t / 32]->arrive_and_wait();
  return result;
}

inline float __uint_as_float(unsigned int u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

template <typename T>
inline T min(T a, T b) {
  return b < a ? b : a;
}

namespace flowfm_emu {

// A fixed set of OS threads that run the CUDA threads of one block at a time (creating 256 OS threads per block
// dominated the emulation's run time). run(n, job) runs job(t) for t < n concurrently on workers 0 .. n-1 and
// returns when all have finished; n never exceeds the pool's size.
class WorkerPool {
 public:
  explicit WorkerPool(unsigned size) {
    workers_.reserve(size);
    for (unsigned t = 0; t < size; ++t) workers_.emplace_back([this, t] { loop(t); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& w : workers_) w.join();
  }
  unsigned size() const { return static_cast<unsigned>(workers_.size()); }
  void run(unsigned n, const std::function<void(unsigned)>& job) {
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = &job;
    active_ = n;
    remaining_ = n;
    ++generation_;
    wake_.notify_all();
    done_.wait(lock, [this] { return remaining_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop(unsigned t) {
    unsigned long long seen = 0;
    for (;;) {
      const std::function<void(unsigned)>* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || (generation_ != seen && t < active_); });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(t);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--remaining_ == 0) done_.notify_one();
    }
  }
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(unsigned)>* job_ = nullptr;
  unsigned active_ = 0, remaining_ = 0;
  unsigned long long generation_ = 0;
  bool stop_ = false;
};

inline WorkerPool& pool_for(unsigned threads) {
  static std::unique_ptr<WorkerPool> pool;
  if (!pool || pool->size() < threads) pool = std::make_unique<WorkerPool>(threads);
  return *pool;
}

// Runs body() for every thread of every block; blocks one after the other, threads of a block concurrently.
inline void launch(dim3 grid, dim3 block, std::size_t smem_bytes, const std::function<void()>& body) {
  gridDim = grid;
  blockDim = block;
  const unsigned threads = block.x * block.y * block.z;
  g_dynamic_smem.assign((smem_bytes + sizeof(float4) - 1) / sizeof(float4) + 1, float4{});
  WorkerPool& pool = pool_for(threads);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        // poison the dynamic shared memory: a read of an element no thread wrote yields NaN
        const float nan = std::numeric_limits<float>::quiet_NaN();
        for (float4& v : g_dynamic_smem) v = make_float4(nan, nan, nan, nan);
        BlockContext ctx(threads);
        pool.run(threads, [&](unsigned t) {
          tls_block = &ctx;
          threadIdx = make_uint3(t, 0, 0);
          blockIdx = make_uint3(x, y, z);
          body();
        });
      }
}

}  // namespace flowfm_emu

#endif  // FLOWFM_CPU_EMULATION_H
