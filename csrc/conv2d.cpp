// conv2d: conv2d / conv_transpose2d (C++ CPU kernels). Placeholder until the family lands.
#include "common.h"

namespace minigen {

void register_conv2d(py::module_& m) {
    (void)m;
}

}  // namespace minigen
