// Argument checks shared by all kernels of minigen._C (declared in common.h). They run with the
// GIL held, before a kernel releases it; each error names the function and the argument.
#include "common.h"

#include <cstdint>
#include <sstream>
#include <vector>

namespace minigen {

std::string shape_str(const py::array& a) {
    std::ostringstream out;
    out << "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        out << (d ? ", " : "") << a.shape(d);
    }
    out << (a.ndim() == 1 ? ",)" : ")");
    return out.str();
}

std::string dtype_str(const py::array& a) {
    return py::str(a.dtype()).cast<std::string>();
}

static std::string type_name(const py::object& obj) {
    py::handle type = reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr()));
    std::string module = py::str(type.attr("__module__")).cast<std::string>();
    std::string name = py::str(type.attr("__qualname__")).cast<std::string>();
    return module == "builtins" ? name : module + "." + name;
}

py::array as_ndarray(const py::object& obj, const char* fn, const char* name) {
    if (!py::isinstance<py::array>(obj)) {
        throw py::type_error(std::string(fn) + ": " + name + " must be a numpy.ndarray, got " +
                             type_name(obj) +
                             " (minigen._C runs on CPU arrays; GPU arrays use the CuPy/Triton "
                             "kernels)");
    }
    return py::reinterpret_borrow<py::array>(obj);
}

DType float_dtype(const py::array& a, const char* fn, const char* name) {
    // array_t<T>::check_ compares dtypes with PyArray_EquivTypes: '<f4' matches float on a
    // little-endian machine, '>f4' does not.
    if (py::isinstance<py::array_t<float>>(a)) {
        return DType::Float32;
    }
    if (py::isinstance<py::array_t<double>>(a)) {
        return DType::Float64;
    }
    throw py::value_error(std::string(fn) + ": " + name +
                          " must be a float32 or float64 array in native byte order, got " +
                          dtype_str(a));
}

void require_c_contiguous(const py::array& a, const char* fn, const char* name) {
    const int flags = a.flags();
    if (!(flags & py::array::c_style)) {
        std::ostringstream strides;
        strides << "(";
        for (py::ssize_t d = 0; d < a.ndim(); ++d) {
            strides << (d ? ", " : "") << a.strides(d);
        }
        strides << ")";
        throw py::value_error(std::string(fn) + ": " + name +
                              " must be C-contiguous, got a view of shape " + shape_str(a) +
                              " with strides " + strides.str() +
                              " bytes; pass np.ascontiguousarray(" + name +
                              ") (for an in-place argument, keep that copy and use it afterwards)");
    }
    if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
        throw py::value_error(std::string(fn) + ": " + name +
                              " is not aligned to its element size; pass a copy (" + name +
                              ".copy())");
    }
}

void require_writeable(const py::array& a, const char* fn, const char* name) {
    if (!a.writeable()) {
        throw py::value_error(std::string(fn) + ": " + name +
                              " is read-only, but it is updated in place");
    }
}

// Same dtype, checked without building strings (this runs several times per optimizer step):
// the same descriptor object (the usual case: numpy shares one per builtin type), or
// descriptors numpy calls equivalent (same type and byte order, as the names would say;
// '>f4' and '<f4' differ, unlike their type numbers).
bool same_dtype(const py::array& a, const py::array& b) {
    PyObject* da = py::detail::array_proxy(a.ptr())->descr;
    PyObject* db = py::detail::array_proxy(b.ptr())->descr;
    return da == db || py::detail::npy_api::get().PyArray_EquivTypes_(da, db);
}

void require_like(const py::array& a, const char* name, const py::array& ref,
                  const char* ref_name, const char* fn) {
    if (!same_dtype(a, ref)) {  // the names are formatted only for the message
        throw py::value_error(std::string(fn) + ": " + name + " is " + dtype_str(a) + " but " +
                              ref_name + " is " + dtype_str(ref) + "; all must have one dtype");
    }
    bool same = a.ndim() == ref.ndim();
    for (py::ssize_t d = 0; same && d < a.ndim(); ++d) {
        same = a.shape(d) == ref.shape(d);
    }
    if (!same) {
        throw py::value_error(std::string(fn) + ": " + name + " has shape " + shape_str(a) +
                              " but " + ref_name + " has shape " + shape_str(ref) +
                              "; the shapes must be equal (no broadcasting)");
    }
}

void require_disjoint(std::initializer_list<std::pair<const py::array*, const char*>> arrays,
                      const char* fn) {
    struct Span {
        std::uintptr_t begin, end;
        const char* name;
    };
    std::vector<Span> spans;
    for (const auto& [arr, name] : arrays) {
        const auto begin = reinterpret_cast<std::uintptr_t>(arr->data());
        const auto bytes = static_cast<std::uintptr_t>(arr->nbytes());
        if (bytes == 0) {
            continue;
        }
        for (const Span& other : spans) {
            if (begin < other.end && other.begin < begin + bytes) {
                throw py::value_error(std::string(fn) + ": " + name + " and " + other.name +
                                      " share memory; pass separate arrays");
            }
        }
        spans.push_back({begin, begin + bytes, name});
    }
}

void require_shape(const py::array& a, std::initializer_list<py::ssize_t> shape, const char* fn,
                   const char* name) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    py::ssize_t d = 0;
    for (auto s : shape) {
        ok = ok && a.shape(d++) == s;
    }
    if (!ok) {
        std::string want = "(";
        d = 0;
        for (auto s : shape) {
            want += (d++ ? ", " : "") + std::to_string(s);
        }
        throw py::value_error(std::string(fn) + ": " + name + " must have shape " + want +
                              "), got " + shape_str(a));
    }
}

}  // namespace minigen
