// A shared library that runs the FlowFM kernels on the CPU (see cpu_emulation.h), one C entry point taking a kernel
// by its NVRTC name expression and its arguments as raw 64-bit values with their kinds:
//   'p' pointer, 'i' int32, 'q' int64, 'f' float32.
// The kinds are checked against the kernel's real parameter types, so a launcher that passes the wrong number or
// width of arguments (which would corrupt a real launch) fails here. The kernel table comes from the generated
// flowfm_emu_kernels.inc: one FLOWFM_EMU_KERNEL(name, function) line per name expression of the JIT build.
#include "cpu_emulation.h"

#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "fm_loss.cu"
#include "gn_film_silu.cu"
#include "ode_steps.cu"

namespace {

template <typename T>
constexpr char kind_of() {
  if constexpr (std::is_pointer_v<T>) return 'p';
  else if constexpr (std::is_same_v<T, int>) return 'i';
  else if constexpr (std::is_same_v<T, long long>) return 'q';
  else if constexpr (std::is_same_v<T, float>) return 'f';
  else return '?';
}

template <typename T>
T from_raw(std::uint64_t raw) {
  if constexpr (std::is_pointer_v<T>) {
    return reinterpret_cast<T>(static_cast<std::uintptr_t>(raw));
  } else if constexpr (std::is_same_v<T, float>) {
    float f;
    const std::uint32_t low = static_cast<std::uint32_t>(raw);
    std::memcpy(&f, &low, sizeof(f));
    return f;
  } else {
    return static_cast<T>(static_cast<std::int64_t>(raw));
  }
}

using Runner = std::function<std::string(dim3, dim3, std::size_t, const std::uint64_t*, const char*, int)>;

template <typename... Args, std::size_t... I>
void call(void (*kernel)(Args...), const std::uint64_t* raw, std::index_sequence<I...>) {
  kernel(from_raw<Args>(raw[I])...);
}

template <typename... Args>
Runner make_runner(void (*kernel)(Args...)) {
  return [kernel](dim3 grid, dim3 block, std::size_t smem, const std::uint64_t* raw, const char* kinds,
                  int nargs) -> std::string {
    constexpr char expected[] = {kind_of<Args>()..., '\0'};
    if (nargs != static_cast<int>(sizeof...(Args)))
      return "expected " + std::to_string(sizeof...(Args)) + " arguments (" + expected + "), got " +
             std::to_string(nargs) + " (" + std::string(kinds, static_cast<std::size_t>(nargs)) + ")";
    if (std::string(kinds, static_cast<std::size_t>(nargs)) != std::string(expected))
      return std::string("argument kinds ") + std::string(kinds, static_cast<std::size_t>(nargs)) +
             " do not match the kernel's " + expected;
    flowfm_emu::launch(grid, block, smem,
                       [&] { call(kernel, raw, std::index_sequence_for<Args...>{}); });
    return "";
  };
}

const std::map<std::string, Runner>& table() {
  static const std::map<std::string, Runner> t = {
#define FLOWFM_EMU_KERNEL(name, ...) {name, make_runner(&__VA_ARGS__)},
#include "flowfm_emu_kernels.inc"
#undef FLOWFM_EMU_KERNEL
  };
  return t;
}

}  // namespace

extern "C" int flowfm_emu_launch(const char* name, const unsigned* grid, const unsigned* block,
                                 unsigned long long smem, const unsigned long long* args, const char* kinds,
                                 int nargs, char* err, int errlen) {
  auto fail = [&](const std::string& msg) {
    std::snprintf(err, static_cast<std::size_t>(errlen), "%s", msg.c_str());
    return 1;
  };
  const auto& t = table();
  const auto it = t.find(name);
  if (it == t.end()) return fail(std::string("no kernel named ") + name);
  if (block[0] * block[1] * block[2] == 0 || grid[0] * grid[1] * grid[2] == 0) return fail("empty launch");
  const std::string msg = it->second(dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), smem,
                                     reinterpret_cast<const std::uint64_t*>(args), kinds, nargs);
  return msg.empty() ? 0 : fail(std::string(name) + ": " + msg);
}

extern "C" int flowfm_emu_kernel_count() { return static_cast<int>(table().size()); }
