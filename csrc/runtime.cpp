// Runtime of minigen._C: the OpenMP thread count the kernels use and build_info(), the record
// of how this binary was built (compiler, OpenMP, flags) that `minigen info` prints.
//
// The thread count is one process-wide value, not OpenMP's per-thread ICV: omp_set_num_threads
// called from one Python thread would not reach kernels launched from another, so every
// parallel loop passes num_threads(minigen::num_threads()) explicitly.
#include "common.h"

#include <atomic>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

// Filled in by CMakeLists.txt; the fallbacks keep a hand-made build compiling.
#ifndef MINIGEN_CXX_COMPILER_ID
#define MINIGEN_CXX_COMPILER_ID "unknown"
#endif
#ifndef MINIGEN_CXX_COMPILER_VERSION
#define MINIGEN_CXX_COMPILER_VERSION "unknown"
#endif
#ifndef MINIGEN_CXX_FLAGS
#define MINIGEN_CXX_FLAGS ""
#endif
#ifndef MINIGEN_BUILD_TYPE
#define MINIGEN_BUILD_TYPE "unknown"
#endif
#ifndef MINIGEN_NATIVE_ARCH
#define MINIGEN_NATIVE_ARCH 0
#endif

namespace minigen {

// 0 until first use, then OpenMP's default (OMP_NUM_THREADS, else the number of cores).
static std::atomic<int> g_num_threads{0};

int num_threads() {
#ifdef _OPENMP
    int n = g_num_threads.load(std::memory_order_relaxed);
    if (n == 0) {
        n = omp_get_max_threads();
        g_num_threads.store(n, std::memory_order_relaxed);
    }
    return n;
#else
    return 1;
#endif
}

void set_num_threads(int n) {
    if (n < 1) {
        throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    }
#ifdef _OPENMP
    g_num_threads.store(n, std::memory_order_relaxed);
#else
    if (n > 1 && PyErr_WarnEx(PyExc_RuntimeWarning,
                              "minigen._C was built without OpenMP: its kernels run on one "
                              "thread", 1) < 0) {
        throw py::error_already_set();  // warnings turned into errors
    }
#endif
}

#ifdef _OPENMP
// _OPENMP is the date (yyyymm) of the OpenMP specification the compiler implements.
static std::string openmp_version_name(long spec_date) {
    switch (spec_date) {
        case 200505: return "2.5";
        case 200805: return "3.0";
        case 201107: return "3.1";
        case 201307: return "4.0";
        case 201511: return "4.5";
        case 201811: return "5.0";
        case 202011: return "5.1";
        case 202111: return "5.2";
        case 202411: return "6.0";
        default: return std::to_string(spec_date);
    }
}
#endif

py::dict build_info() {
    py::dict info;
    info["compiler_id"] = MINIGEN_CXX_COMPILER_ID;
    info["compiler_version"] = MINIGEN_CXX_COMPILER_VERSION;
    info["compiler"] = std::string(MINIGEN_CXX_COMPILER_ID) + " " + MINIGEN_CXX_COMPILER_VERSION;
    info["cxx_standard"] = static_cast<long>(__cplusplus);
    info["build_type"] = MINIGEN_BUILD_TYPE;
    info["flags"] = MINIGEN_CXX_FLAGS;
    info["native_arch"] = static_cast<bool>(MINIGEN_NATIVE_ARCH);
#ifdef _OPENMP
    info["openmp"] = true;
    info["openmp_version"] = openmp_version_name(_OPENMP);
    info["openmp_spec_date"] = static_cast<long>(_OPENMP);
    info["num_procs"] = omp_get_num_procs();
#else
    info["openmp"] = false;
    info["openmp_version"] = py::none();
    info["openmp_spec_date"] = py::none();
    info["num_procs"] = py::none();
#endif
    info["num_threads"] = num_threads();
    info["parallel_min_elements"] = static_cast<long long>(kParallelMin);
    info["pybind11_version"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." +
                               std::to_string(PYBIND11_VERSION_MINOR) + "." +
                               std::to_string(PYBIND11_VERSION_PATCH);
    py::list names;
    for (const auto& name : kernel_names()) names.append(name);
    info["kernels"] = py::tuple(names);
    return info;
}

std::vector<std::string>& kernel_names() {
    static std::vector<std::string> names;
    return names;
}

}  // namespace minigen
