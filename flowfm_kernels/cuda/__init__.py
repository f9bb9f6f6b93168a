"""CUDA C++ backend: loader for the compiled ``flowfm_kernels._C`` module (or CuPy/NVRTC JIT) and op wrappers.

``loader``        finds the kernels (``flowfm_kernels._C``, else a CuPy/NVRTC JIT build of ``csrc/*.cu``); never
                  imported at ``import flowfm`` time.
``ops``           the ops with the eager references' signatures (what the dispatcher calls for ``backend="cuda"``).
``_cupy_jit``     the JIT twin of ``_C`` (same functions) and the launch plans shared with ``csrc/flowfm_api.h``.
``_build``        setup.py's build decisions (FLOWFM_BUILD_CUDA, CUDA root discovery, nvcc flags) as pure functions.
``_nvrtc_check``  compiles the JIT sources with NVRTC through ctypes (CI, no GPU needed).
"""
