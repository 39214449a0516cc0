// Shared declarations of the native extension minigen._C: the kernels each file implements,
// argument checks (clear ValueError/TypeError messages instead of silent copies) and the
// OpenMP thread count. No kernel lives here; see elementwise.cpp, optim.cpp, runtime.cpp.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace minigen {

// ---- threading (runtime.cpp) ----------------------------------------------------------------

// Below this many elements a kernel runs on the calling thread. Waking an OpenMP team costs a
// few microseconds, but the larger cost is after the region: libgomp's idle threads spin
// (OMP_WAIT_POLICY unset, or set by another library that loaded the runtime first, such as
// PyTorch) and take the cores from the BLAS threads of the next matmul. Measured on the
// 2-core machine, E1 with torch imported: the training step took ~12 ms with a 32k threshold
// and ~4 ms with this one. Memory-bound kernels gain little from a second thread below ~1M.
constexpr std::ptrdiff_t kParallelMin = std::ptrdiff_t(1) << 20;

int num_threads();  // threads a parallel kernel uses: 1 without OpenMP
void set_num_threads(int n);
py::dict build_info();
// The names of the kernels this build registered (build_info()["kernels"]); each family's
// register_* function appends its own.
std::vector<std::string>& kernel_names();

// MINIGEN_PARALLEL_FOR(n) goes before a `for (i = 0; i < n; ++i)` loop whose iterations are
// independent: OpenMP splits it into one contiguous chunk per thread (when n is large enough)
// and asks each thread to vectorize its chunk. `if(parallel: ...)` must name the construct:
// a bare `if` would also switch off `simd` for small loops (OpenMP 5.0). Without OpenMP the
// loop stays a plain loop, vectorized when -fopenmp-simd or the optimizer allows it.
#define MINIGEN_PRAGMA(x) _Pragma(#x)
#ifdef _OPENMP
#define MINIGEN_PARALLEL_FOR(n)                                                  \
    MINIGEN_PRAGMA(omp parallel for simd schedule(static)                        \
                   num_threads(::minigen::num_threads())                         \
                   if(parallel: (n) >= ::minigen::kParallelMin))
#else
#define MINIGEN_PARALLEL_FOR(n) MINIGEN_PRAGMA(omp simd)
#endif

// ---- kernels ------------------------------------------------------------------------------

py::array erf(const py::object& x);  // elementwise.cpp
void add_broadcast(const py::object& big, const py::object& small,
                   const py::object& out);  // elementwise.cpp
void copy_rows(const py::object& src, const py::object& dst);  // elementwise.cpp

void adam_step(const py::object& param, const py::object& grad, const py::object& exp_avg,
               const py::object& exp_avg_sq, double lr, double beta1, double beta2, double eps,
               double weight_decay, long long step, bool decoupled);  // optim.cpp

void sgd_momentum_step(const py::object& param, const py::object& grad, const py::object& buf,
                       double lr, double momentum, double dampening, double weight_decay,
                       bool nesterov, bool first_step);  // optim.cpp

// The kernel families, one file each; each binds its functions into the module and appends
// their names to kernel_names().
void register_gemm(py::module_& m);            // gemm.cpp (under conv2d and attention)
void register_conv2d(py::module_& m);          // conv2d.cpp
void register_conv2d_direct(py::module_& m);   // conv2d_direct.cpp
void register_attention(py::module_& m);       // attention.cpp
void register_noise_schedule(py::module_& m);  // noise_schedule.cpp
void register_logdet(py::module_& m);          // logdet.cpp (calls register_logdet_flow)
void register_logdet_flow(py::module_& m);     // logdet_flow.cpp
void register_normalization(py::module_& m);   // normalization.cpp
void register_resample(py::module_& m);        // resample.cpp (nearest upsampling)

// ---- argument checks (common.cpp) -----------------------------------------------------------
// Every check names the function and the argument: "adam_step: grad has shape (3, 4) but
// param has shape (3, 5)". Wrong dtype, layout or shape raise ValueError; a non-array raises
// TypeError. Nothing is converted or copied behind the caller's back: an in-place update of a
// silent copy would be lost.

enum class DType { Float32, Float64 };

// obj must be a numpy.ndarray (not a list, not a cupy array).
py::array as_ndarray(const py::object& obj, const char* fn, const char* name);
// float32 or float64 in native byte order.
DType float_dtype(const py::array& a, const char* fn, const char* name);
// C-contiguous and aligned, so that the kernel can walk it as a flat T[size].
void require_c_contiguous(const py::array& a, const char* fn, const char* name);
void require_writeable(const py::array& a, const char* fn, const char* name);
// Exactly this shape.
void require_shape(const py::array& a, std::initializer_list<py::ssize_t> shape, const char* fn,
                   const char* name);
// Same dtype and shape as ref.
void require_like(const py::array& a, const char* name, const py::array& ref,
                  const char* ref_name, const char* fn);
// No two arrays share memory: the kernels read and write them through restrict pointers.
void require_disjoint(std::initializer_list<std::pair<const py::array*, const char*>> arrays,
                      const char* fn);

// a and b have equivalent dtypes (no string formatting: cheap enough for per-call checks).
bool same_dtype(const py::array& a, const py::array& b);

std::string shape_str(const py::array& a);
std::string dtype_str(const py::array& a);

// with_bool(b, f) calls f(std::true_type{}) or f(std::false_type{}): it turns a runtime flag
// into a template argument, so that each kernel variant is a branch-free loop the compiler
// vectorizes (decltype(flag)::value is a constant inside f).
template <typename F>
void with_bool(bool b, F&& f) {
    if (b) {
        f(std::true_type{});
    } else {
        f(std::false_type{});
    }
}

}  // namespace minigen
