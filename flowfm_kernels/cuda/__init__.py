"""CUDA C++ backend: loader for the compiled ``flowfm_kernels._C`` module (or CuPy/NVRTC JIT) and op wrappers."""
