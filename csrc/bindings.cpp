// pybind11 module flowfm_kernels._C: raw-pointer entry points to the FlowFM CUDA kernels.
//
// No torch headers: pointers are Python ints (tensor.data_ptr()), the stream is an int
// (torch.cuda.current_stream().cuda_stream), dtypes are codes (DTYPE_FLOAT32 / DTYPE_FLOAT16 / DTYPE_BFLOAT16), so
// one build serves every torch version. Compiled by the host C++ compiler; the kernels live in the .cu files.
// Argument errors raise ValueError, launch errors RuntimeError (naming the kernel). Calls release the GIL.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>

#include "flowfm_api.h"

namespace py = pybind11;
using std::uintptr_t;

#ifndef FLOWFM_VERSION
#define FLOWFM_VERSION "0.1.0"
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() =
      "FlowFM CUDA C++ kernels (GroupNorm+FiLM+SiLU, flow-matching loss, interpolation, ODE steps) behind raw "
      "device pointers and an explicit CUDA stream. Use through flowfm_kernels.cuda.ops.";
  m.attr("__version__") = FLOWFM_VERSION;
  m.attr("IMPLEMENTATION") = "ext";
  m.attr("DTYPE_FLOAT32") = static_cast<int>(flowfm::kFloat32);
  m.attr("DTYPE_FLOAT16") = static_cast<int>(flowfm::kFloat16);
  m.attr("DTYPE_BFLOAT16") = static_cast<int>(flowfm::kBFloat16);
  m.attr("REDUCTION_MEAN") = static_cast<int>(flowfm::kReduceMean);
  m.attr("REDUCTION_PER_SAMPLE") = static_cast<int>(flowfm::kReducePerSample);
  m.attr("SMEM_BUDGET_BYTES") = flowfm::kSmemBudgetBytes;
  m.attr("FM_LOSS_CHUNK") = flowfm::kFmLossChunk;

  using release = py::call_guard<py::gil_scoped_release>;

  // ---- plans (pure: no GPU needed)
  m.def(
      "gn_fwd_plan",
      [](long long B, long long C, long long L, long long G, int num_sms) {
        if (B <= 0 || C <= 0 || L <= 0 || G <= 0 || C % G != 0 || num_sms <= 0)
          throw std::invalid_argument("gn_fwd_plan: need positive B, C, L, G, num_sms with C % G == 0");
        const flowfm::GnPlan p = flowfm::gn_fwd_plan(B, C, L, G, num_sms);
        py::dict d;
        d["fused"] = p.fused;
        d["cache"] = p.cache;
        d["chunks"] = p.chunks;
        d["chunk_elems"] = p.chunk_elems;
        d["smem_bytes"] = p.smem_bytes;
        d["workspace_bytes"] = p.workspace_bytes;
        return d;
      },
      py::arg("B"), py::arg("C"), py::arg("L"), py::arg("G"), py::arg("num_sms"),
      "Launch plan of gn_film_silu_fwd for h (B, C, L) with G groups on a GPU with num_sms SMs (a dict).");
  m.def("gn_bwd_workspace_bytes", &flowfm::gn_bwd_workspace_bytes, py::arg("B"), py::arg("C"),
        "Workspace bytes of gn_film_silu_bwd.");
  m.def("fm_loss_chunks", &flowfm::fm_loss_chunks, py::arg("N"), "Chunks (blocks) per sample of fm_loss_fwd.");
  m.def("fm_loss_workspace_bytes", &flowfm::fm_loss_workspace_bytes, py::arg("B"), py::arg("N"),
        "Workspace bytes of fm_loss_fwd.");

  // ---- device queries
  m.def("current_device_sm_count", &flowfm::current_device_sm_count, release(),
        "Number of SMs of the current CUDA device.");
  m.def("gn_fwd_workspace_bytes", &flowfm::gn_fwd_workspace_bytes, py::arg("B"), py::arg("C"), py::arg("L"),
        py::arg("G"), release(), "Workspace bytes of gn_film_silu_fwd for this shape on the current device.");

  // ---- kernels
  m.def("gn_film_silu_fwd", &flowfm::gn_film_silu_fwd, py::arg("h"), py::arg("gamma"), py::arg("beta"),
        py::arg("scale"), py::arg("shift"), py::arg("y"), py::arg("mean"), py::arg("rstd"), py::arg("workspace"),
        py::arg("workspace_bytes"), py::arg("B"), py::arg("C"), py::arg("L"), py::arg("G"), py::arg("eps"),
        py::arg("dtype"), py::arg("stream"), release(),
        "y = SiLU((GN(h) * gamma + beta) * (1 + scale) + shift); writes mean, rstd (B, G) float32. "
        "gamma/beta (C,) and scale/shift (B, C) are float32 pointers or 0.");
  m.def("gn_film_silu_bwd", &flowfm::gn_film_silu_bwd, py::arg("dy"), py::arg("h"), py::arg("gamma"),
        py::arg("beta"), py::arg("scale"), py::arg("shift"), py::arg("mean"), py::arg("rstd"), py::arg("dh"),
        py::arg("dgamma"), py::arg("dbeta"), py::arg("dscale"), py::arg("dshift"), py::arg("workspace"),
        py::arg("workspace_bytes"), py::arg("B"), py::arg("C"), py::arg("L"), py::arg("G"), py::arg("dtype"),
        py::arg("stream"), release(),
        "Backward of gn_film_silu_fwd; each output pointer may be 0 to skip it. Deterministic.");
  m.def("fm_loss_fwd", &flowfm::fm_loss_fwd, py::arg("v"), py::arg("x0"), py::arg("x1"), py::arg("grad"),
        py::arg("loss"), py::arg("workspace"), py::arg("workspace_bytes"), py::arg("B"), py::arg("N"),
        py::arg("sigma_min"), py::arg("reduction"), py::arg("dtype_v"), py::arg("dtype_x"), py::arg("stream"),
        release(),
        "Flow-matching loss (float32: 1 value for mean, B for per_sample) and, if grad != 0, dL/dv (float32) for an "
        "upstream gradient of 1, in one pass.");
  m.def("interpolate", &flowfm::interpolate, py::arg("x0"), py::arg("x1"), py::arg("t"), py::arg("out"),
        py::arg("B"), py::arg("N"), py::arg("sigma_min"), py::arg("dtype"), py::arg("stream"), release(),
        "out = (1 - (1 - sigma_min) t_b) x0 + t_b x1 (t float32 (B,)).");
  m.def("euler_step", &flowfm::euler_step, py::arg("x"), py::arg("v"), py::arg("v_null"), py::arg("dt"),
        py::arg("out"), py::arg("B"), py::arg("N"), py::arg("guidance"), py::arg("dtype_x"), py::arg("dtype_v"),
        py::arg("stream"), release(), "out = x + dt_b * g(v, v_null); out may be x.");
  m.def("heun_correct", &flowfm::heun_correct, py::arg("x"), py::arg("v1"), py::arg("v2"), py::arg("v1_null"),
        py::arg("v2_null"), py::arg("dt"), py::arg("out"), py::arg("B"), py::arg("N"), py::arg("guidance"),
        py::arg("dtype_x"), py::arg("dtype_v"), py::arg("stream"), release(),
        "out = x + dt_b / 2 * (g(v1, v1_null) + g(v2, v2_null)); out may be x.");
  m.def("rk4_combine", &flowfm::rk4_combine, py::arg("x"), py::arg("k1"), py::arg("k2"), py::arg("k3"),
        py::arg("k4"), py::arg("dt"), py::arg("out"), py::arg("B"), py::arg("N"), py::arg("dtype_x"),
        py::arg("dtype_v"), py::arg("stream"), release(), "out = x + dt_b / 6 * (k1 + 2 k2 + 2 k3 + k4).");
  m.def("guidance_combine", &flowfm::guidance_combine, py::arg("v"), py::arg("v_null"), py::arg("out"),
        py::arg("n"), py::arg("guidance"), py::arg("dtype"), py::arg("stream"), release(),
        "out = v_null + w (v - v_null) over n elements.");
}
