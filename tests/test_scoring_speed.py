"""The fast paths of scoring and training (issue 18): cache-sized inference chunks on
the CPU, the scaling computed by torch, the trainer's deferred loss sums. Each gives
the same numbers as the plain way, bit for bit."""

import numpy as np
import pytest
import torch

from aedetect import _data
from aedetect._training import LossSums
from aedetect.models.compiled import AdamState, _bias_corrections


@pytest.fixture(scope="module")
def rows():
    rng = np.random.RandomState(0)
    Z = rng.normal(size=(700, 3))
    return (Z @ rng.normal(size=(3, 9)) + 0.05 * rng.normal(size=(700, 9))).astype(np.float32)


# ------------------------------------------------------------------ chunks
def test_cpu_chunks_are_cache_sized_within_the_memory_budget(monkeypatch):
    budget = _data.chunk_rows((50,), (64,), 32)  # no device: the memory budget alone
    assert budget == _data.SCORING_MEMORY_BUDGET // (16 * 64)
    assert _data.chunk_rows((50,), (3000,), 32) % _data.MIN_SCORING_ROWS == 0  # whole blocks
    assert _data.chunk_rows((50,), (64,), 32, device="cuda") == budget
    cpu = _data.chunk_rows((50,), (64,), 32, device="cpu")
    assert cpu == _data.CPU_CHUNK_BYTES // (4 * 64) < budget
    assert _data.chunk_rows((50,), (128, 64, 32), 2, copies=2,
                            device=torch.device("cpu")) == _data.CPU_CHUNK_BYTES // (4 * 128 * 2)
    # wide layers: at least MIN_CPU_CHUNK_ROWS rows, never more than the memory budget
    assert _data.chunk_rows((784,), (256, 128), 8, copies=2,
                            device="cpu") == _data.MIN_CPU_CHUNK_ROWS
    assert _data.chunk_rows((784,), (256, 128), 8, copies=11, device="cpu") == (
        _data.chunk_rows((784,), (256, 128), 8, copies=11)) < _data.MIN_CPU_CHUNK_ROWS
    assert _data.chunk_rows((3, 64, 64), (), 8, conv_channels=(32, 64), device="cpu") == (
        _data.chunk_rows((3, 64, 64), (), 8, conv_channels=(32, 64)))


def test_scores_do_not_depend_on_the_chunk_size(detector_class, rows):
    detector = detector_class(max_iter=3, random_state=0).fit(rows)
    model = detector.module_
    assert detector._chunk_rows() == _data.chunk_rows(
        detector.input_shape_, detector.hidden_layer_sizes_, detector.latent_dim_,
        copies=model.inference_copies, device="cpu")
    full = detector.score_samples(rows)
    for chunk in (16, 32, 48, 64, 336, 700, 5000):  # whole blocks of 16 rows: bit for bit
        scores = detector._inference(lambda x: model.score(x, detector.score_type), rows, chunk)
        np.testing.assert_array_equal(scores, full)
    for chunk in (1, 5, 17, 333):  # rows elsewhere in the matrix product's blocks
        scores = detector._inference(lambda x: model.score(x, detector.score_type), rows, chunk)
        np.testing.assert_allclose(scores, full, rtol=1e-6, atol=1e-6)
    codes = detector.transform(rows)
    np.testing.assert_array_equal(detector._inference(model.encode, rows, 48), codes)


def test_chunk_budget_changes_no_score(detector_class, rows, monkeypatch):
    detector = detector_class(max_iter=3, random_state=0).fit(rows)
    before = detector.score_samples(rows)
    monkeypatch.setattr(_data, "CPU_CHUNK_BYTES", 1)
    monkeypatch.setattr(_data, "MIN_CPU_CHUNK_ROWS", 50)
    assert detector._chunk_rows() == 48
    np.testing.assert_array_equal(detector.score_samples(rows), before)


# ----------------------------------------------------------------- scaling
def _numpy_scaling(X, center, scale):
    with np.errstate(over="ignore", invalid="ignore"):
        return ((X - center) / scale).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_scaling_equals_numpy_bit_for_bit(dtype):
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((400, 6)) * 10.0 ** rng.integers(-20, 20, (400, 6))).astype(dtype)
    center = rng.standard_normal(6) * 1e3
    scale = np.abs(rng.standard_normal(6)) * 1e-3 + 1e-9
    scaling = _data.Scaling(center, scale)
    kept = X.copy()
    for rows in (X, X[::3], np.asfortranarray(X), X[50:51], X[:0]):
        out = scaling.transform(rows, (6,))
        assert out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, _numpy_scaling(rows, center, scale))
        tensor = scaling.tensor(rows, (2, 3))
        assert tensor.dtype == torch.float32 and tensor.is_contiguous()
        assert tuple(tensor.shape) == (rows.shape[0], 2, 3)
        np.testing.assert_array_equal(tensor.numpy().reshape(rows.shape[0], 6), out)
    np.testing.assert_array_equal(X, kept)  # the input is never scaled in place


def test_scaling_of_other_arrays_takes_numpy(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 4))
    center, scale = rng.standard_normal(4), rng.random(4) + 0.5
    expected = _numpy_scaling(X, center, scale)
    read_only = X.copy()
    read_only.flags.writeable = False
    for rows in (read_only, X[::-1], X.astype(np.float16), X.astype(">f8")):
        np.testing.assert_allclose(_data.Scaling(center, scale).transform(rows, (4,)),
                                   _numpy_scaling(rows, center, scale))
    np.testing.assert_array_equal(_data.Scaling(center, scale).transform(read_only, (4,)),
                                  expected)


def test_scaling_out_of_float32_still_names_the_value():
    X = np.ones((5, 3))
    X[3, 1] = 1e300
    with pytest.raises(ValueError, match=r"X\[13, 'b'\] = 1e\+300 does not fit in float32"):
        _data.Scaling(np.zeros(3), np.ones(3)).tensor(X, (3,), start=10,
                                                      feature_names=np.array(["a", "b", "c"]))


# --------------------------------------------------------------- loss sums
def _eager_sums(steps):
    totals = {}
    for losses, n in steps:
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + value.detach().float() * n
    return totals


@pytest.mark.parametrize("flush", [1, 3, 512])
def test_deferred_loss_sums_equal_the_sums_step_by_step(flush, monkeypatch):
    monkeypatch.setattr(LossSums, "FLUSH", flush)
    generator = torch.Generator().manual_seed(0)
    steps = []
    for i in range(40):
        losses = {"loss": torch.randn((), generator=generator) * 1e3,
                  "kl": torch.rand((), generator=generator).to(torch.bfloat16)}
        if i >= 7:  # a loss that appears later
            losses["late"] = torch.randn((), generator=generator)
        steps.append((losses, 32 if i < 39 else 29))
    deferred = LossSums("cpu")
    for losses, n in steps:
        deferred.add(losses, n)
    totals = deferred.totals()
    expected = _eager_sums(steps)
    assert list(totals) == list(expected)
    for name in expected:
        assert totals[name].dtype == torch.float32 and totals[name].shape == ()
        assert float(totals[name]) == float(expected[name])


def test_loss_sums_off_the_cpu_add_as_they_come():
    sums = LossSums("meta")
    assert not sums.deferred
    sums.add({"loss": torch.tensor(2.0)}, 3)
    assert float(sums.totals()["loss"]) == 6.0


# ---------------------------------------------------------- Adam's scalars
def test_bias_corrections_match_torch_adam():
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(layer.parameters(), lr=3e-3, betas=(0.8, 0.99))
    adam = AdamState(torch.nn.Sequential(layer), optimizer, "main")
    steps = [torch.tensor(7.0), torch.tensor(1000.0)]
    corrections = _bias_corrections(adam, steps)
    assert corrections.dtype == torch.float32 and corrections.shape == (2, 2)
    for row, step in zip(corrections, (7.0, 1000.0)):
        np.testing.assert_allclose(float(row[0]), 3e-3 / (1 - 0.8 ** step), rtol=1e-6)
        np.testing.assert_allclose(float(row[1]), (1 - 0.99 ** step) ** 0.5, rtol=1e-6)
