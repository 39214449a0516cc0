// noise_schedule: fused diffusion noise-schedule ops (C++ CPU kernels). Placeholder until the family lands.
#include "common.h"

namespace minigen {

void register_noise_schedule(py::module_& m) {
    (void)m;
}

}  // namespace minigen
