"""minigen.models.classifier: shapes, training on a synthetic 10-class task, the cache, the
noisy-x_t classifier and its input gradient (what classifier guidance uses)."""
import numpy as np
import pytest

import minigen
from minigen.harness import classifier as C


def bars(n, seed, noise=0.3):
    """10 classes of 12×12 images in [−1, 1] (small: the 2-core CI budget): class k < 5 a
    horizontal bar at row 1 + 2k, k ≥ 5 a vertical bar at column 1 + 2(k − 5); plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = -np.ones((n, 1, 12, 12), np.float32)
    for i, k in enumerate(y):
        p = 1 + 2 * (k % 5)
        if k < 5:
            x[i, 0, p, 2:10] = 1.0
        else:
            x[i, 0, 2:10, p] = 1.0
    x += noise * rng.standard_normal(x.shape).astype(np.float32)
    return np.clip(x, -1, 1), y.astype(np.int64)


@pytest.fixture(scope="module")
def data():
    return bars(400, 0), bars(200, 1)


def test_shapes_and_features():
    net = C.MNISTClassifier(generator=minigen.Generator().manual_seed(0))
    x = minigen.randn(3, 1, 28, 28)
    assert tuple(net(x).shape) == (3, 10)
    assert tuple(net.features(x).shape) == (3, 128)
    noisy = C.NoisyClassifier(generator=minigen.Generator().manual_seed(0))
    t = minigen.tensor(np.array([0, 10, 999]))
    assert tuple(noisy(x, t).shape) == (3, 10)
    assert tuple(noisy(x, minigen.tensor(np.int64(5))).shape) == (3, 10)   # shared timestep
    small = C.MNISTClassifier(image_size=12)
    assert tuple(small(minigen.randn(2, 1, 12, 12)).shape) == (2, 10)
    with pytest.raises(ValueError, match="divisible by 4"):
        C.MNISTClassifier(image_size=30)


def test_to_model_range():
    v = np.array([[[0, 255], [128, 51]]], np.uint8)
    # float32: v/127.5 − 1 rounds twice near magnitude 1, an absolute error ≤ 2⁻²³
    np.testing.assert_allclose(C.to_model_range(v)[0, 0], v[0] / 127.5 - 1, atol=2 ** -23)
    assert C.to_model_range(v).dtype == np.float32
    assert C.to_model_range(v).shape == (1, 1, 2, 2)


def test_train_classifier_learns_and_caches(data, tmp_path):
    logs = []
    kw = dict(epochs=3, batch_size=32, seed=0, data=data, log=logs.append,
              cache=str(tmp_path), augment=False)
    model = C.train_classifier(**kw)
    (_, _), (xh, yh) = data
    acc = C.accuracy(model, xh, yh)
    assert acc >= 0.9 and model.metrics["heldout_accuracy"] == pytest.approx(acc)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    # second call: loaded, not retrained, same predictions
    logs.clear()
    again = C.train_classifier(**kw)
    assert any("loaded" in m for m in logs) and not any("epoch" in m for m in logs)
    np.testing.assert_array_equal(C.predict(again, xh), C.predict(model, xh))
    # other settings → another cache entry
    C.train_classifier(**{**kw, "epochs": 1})
    assert len(list(tmp_path.iterdir())) == 2


def test_train_classifier_is_seeded(data):
    kw = dict(epochs=1, batch_size=64, data=data, log=None, cache=None)   # (with shifts)
    a, b = C.train_classifier(seed=3, **kw), C.train_classifier(seed=3, **kw)
    (_, _), (xh, _) = data
    np.testing.assert_array_equal(C.predict(a, xh), C.predict(b, xh))


def test_noisy_classifier_trains_and_gives_input_gradient(data):
    from minigen.diffusion import DDPMScheduler
    from minigen.diffusion.sampling import classifier_log_prob_grad
    sched = DDPMScheduler(num_train_timesteps=20)
    model = C.train_noisy_classifier(sched, epochs=3, batch_size=32, data=data, log=None,
                                     cache=None)
    (_, _), (xh, yh) = data
    acc0 = C.accuracy(model, xh, yh, t=np.zeros(len(xh), np.int64))
    assert acc0 >= 0.8
    # ∇_x log p(y | x_t) through minigen.autograd.grad, against central differences (float64)
    model.to(dtype=minigen.float64)
    x = minigen.tensor(xh[:2].astype(np.float64))
    t = minigen.tensor(np.array([3, 7]))
    y = minigen.tensor(yh[:2])
    g = classifier_log_prob_grad(model, x, t, y).numpy()
    assert g.shape == (2, 1, 12, 12) and np.all(np.isfinite(g))

    def logp(arr):
        with minigen.no_grad():
            lp = minigen.nn.functional.log_softmax(model(minigen.tensor(arr), t), dim=-1)
        return float(lp.numpy()[0, yh[0]] + lp.numpy()[1, yh[1]])

    h = 1e-6
    for idx in [(0, 0, 10, 10), (1, 0, 5, 2), (0, 0, 3, 7)]:
        xp, xm = x.numpy().copy(), x.numpy().copy()
        xp[idx] += h
        xm[idx] -= h
        num = (logp(xp) - logp(xm)) / (2 * h)
        assert abs(num - g[idx]) <= 1e-6 + 1e-5 * abs(num)
