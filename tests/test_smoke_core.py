import numpy as np

import minigen as mg
from op_check import check_op


def test_mul_broadcast():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    check_op(lambda x, y: x * y, lambda x, y: x * y, [a, b])


def test_softmax():
    a = np.random.default_rng(1).standard_normal((3, 5))
    def ref(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    check_op(lambda x: mg.softmax(x, -1), ref, [a])
