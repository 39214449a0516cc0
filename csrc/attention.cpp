// attention: scaled dot-product attention (C++ CPU kernels). Placeholder until the family lands.
#include "common.h"

namespace minigen {

void register_attention(py::module_& m) {
    (void)m;
}

}  // namespace minigen
