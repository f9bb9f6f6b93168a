"""CUDA C++ backend plumbing shared by the ops: loading, building and launching the kernels in ``csrc/``.

The per-op wrappers live beside each op (``flowfm_kernels/<op>/cuda.py``).

``loader``        finds the kernels (``flowfm_kernels._C``, else a CuPy/NVRTC JIT build of ``csrc/*.cu``); never
                  imported at ``import flowfm`` time.
``launch``        host-side helpers of the wrappers: dtype codes, device / shape checks, pointers, streams, outputs.
``_cupy_jit``     the JIT twin of ``_C`` (same functions) and the launch plans shared with ``csrc/flowfm_api.h``.
``_build``        setup.py's build decisions (FLOWFM_BUILD_CUDA, CUDA root discovery, nvcc flags) as pure functions.
``_nvrtc_check``  compiles the JIT sources with NVRTC through ctypes (CI, no GPU needed).
"""
