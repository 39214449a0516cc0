// logdet: LU, slogdet, inv, solve and the flow primitives (C++ CPU kernels). Placeholder until the family lands.
#include "common.h"

namespace minigen {

void register_logdet(py::module_& m) {
    (void)m;
}

}  // namespace minigen
