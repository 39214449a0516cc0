import os

import numpy as np
import pytest

import minigen as mg

# Without a GPU, Triton kernels run in Triton's interpreter; it must be on before triton loads.
if not mg.cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    from hypothesis import settings

    settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True)
    settings.register_profile("dev", max_examples=10, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is part of the [dev] extra
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA GPU (skipped otherwise)")
    config.addinivalue_line("markers", "slow: long-running (training runs)")


def pytest_collection_modifyitems(config, items):
    if mg.cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU / CuPy: GPU test skipped")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    return request.param
