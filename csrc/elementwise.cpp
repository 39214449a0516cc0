// Kernel family: erf (elementwise).
//
// Versions: the numpy reference in minigen/ops/special.py (Python's math.erf per element);
// this one (C++ std::erf, OpenMP, float32 and float64); cupyx.scipy.special.erf on the GPU.
//
// Math:  erf(x) = 2/√π ∫₀ˣ exp(−t²) dt.   Odd; erf(±∞) = ±1, erf(±0) = ±0, erf(nan) = nan.
//        The exact GELU uses it: gelu(x) = x · ½ (1 + erf(x/√2)).
//
// Bytes moved per element: read x, write y = 2·sizeof(T): 8 B (float32), 16 B (float64).
// std::erf costs tens of cycles, so at a few threads the kernel is compute-bound, not
// bandwidth-bound; OpenMP splits the array into one contiguous chunk per thread.
#include "common.h"

#include <cmath>
#include <vector>

namespace minigen {

template <typename T>
static void erf_kernel(const T* __restrict x, T* __restrict y, std::ptrdiff_t n) {
    MINIGEN_PARALLEL_FOR(n)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        y[i] = std::erf(x[i]);  // y = erf(x): the libm erf/erff, within 1–2 ulp
    }
}

template <typename T>
static py::array erf_typed(const py::array& x) {
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    py::array_t<T> y(shape);  // new C-contiguous array, same shape and dtype as x
    const T* src = static_cast<const T*>(x.data());
    T* dst = y.mutable_data();
    const std::ptrdiff_t n = x.size();
    {
        py::gil_scoped_release release;
        erf_kernel(src, dst, n);
    }
    return y;
}

py::array erf(const py::object& obj) {
    const py::array x = as_ndarray(obj, "erf", "x");
    const DType dtype = float_dtype(x, "erf", "x");
    require_c_contiguous(x, "erf", "x");
    return dtype == DType::Float32 ? erf_typed<float>(x) : erf_typed<double>(x);
}

}  // namespace minigen
