"""Export of the fitted scorer (scaling plus the model's state dict): torch.export and
ONNX run in onnxruntime give the scores of ``score_samples``."""

import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

from aedetect import AAEDetector, AEDetector, VAEDetector
from aedetect.export import to_exported_program, to_onnx

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

DIGITS = load_digits().data[:300]
FAST = {"max_iter": 3, "random_state": 0}


def _relative(actual, expected):
    """max |actual - expected| / max |expected|: scores cross zero, so the error is
    measured against the scores' own size."""
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _onnx_scores(path, X):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": np.asarray(X, dtype=np.float32)})[0]


def _run(program, X, dtype=torch.float32):
    with torch.no_grad():
        return program(torch.as_tensor(X, dtype=dtype)).numpy()


@pytest.fixture(scope="module", params=[AEDetector, VAEDetector, AAEDetector],
                ids=lambda cls: cls.__name__)
def fitted(request):
    return request.param(**FAST).fit(DIGITS)


def test_onnx_matches_score_samples_for_each_default_score_type(fitted, tmp_path):
    path = to_onnx(fitted, tmp_path / "scorer.onnx")
    expected = fitted.score_samples(DIGITS)
    for rows in (DIGITS[:1], DIGITS[:7], DIGITS):  # the batch dimension is dynamic
        got = _onnx_scores(path, rows)
        assert got.shape == (rows.shape[0],) and got.dtype == np.float32
        assert _relative(got, expected[:rows.shape[0]]) < 1e-5


def test_exported_program_saves_loads_and_matches(fitted, tmp_path):
    path = tmp_path / "scorer.pt2"
    to_exported_program(fitted, path)
    program = torch.export.load(str(path)).module()
    got = _run(program, DIGITS)
    assert _relative(got, fitted.score_samples(DIGITS)) < 1e-5
    # float64 input scales as score_samples does, in float64: the model sees the same rows
    exact = to_exported_program(fitted, input_dtype="float64").module()
    np.testing.assert_array_equal(_run(exact, DIGITS, torch.float64),
                                  fitted.score_samples(DIGITS).astype(np.float32))


def test_export_holds_a_copy_of_the_fit(tmp_path):
    detector = AEDetector(**FAST).fit(DIGITS)
    program = to_exported_program(detector).module()
    before = _run(program, DIGITS[:20])
    detector.fit(DIGITS[::-1] * 2)
    after = _run(program, DIGITS[:20])
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("score_type", ["latent", "combined"])
def test_onnx_latent_neighbour_scores(score_type, tmp_path):
    # cdist has no ONNX translation: it is exported as explicit differences
    detector = AEDetector(score_type=score_type, **FAST).fit(DIGITS)
    path = to_onnx(detector, tmp_path / "latent.onnx")
    assert _relative(_onnx_scores(path, DIGITS), detector.score_samples(DIGITS)) < 1e-5


def test_onnx_conv_detector_on_images(tmp_path):
    images = DIGITS.reshape(-1, 8, 8) / 16.0
    detector = AEDetector(architecture="conv", conv_channels=(4, 8), **FAST).fit(images)
    path = to_onnx(detector, tmp_path / "conv.onnx", images=True)
    got = _onnx_scores(path, images.reshape(-1, 1, 8, 8))
    assert _relative(got, detector.score_samples(images)) < 1e-5


def test_conditional_aae_exports_its_best_class_score(tmp_path):
    y = load_digits().target[:300]
    detector = AAEDetector(conditional=True, latent_dim=2, **FAST).fit(DIGITS, y)
    path = to_onnx(detector, tmp_path / "cond.onnx")
    assert _relative(_onnx_scores(path, DIGITS), detector.score_samples(DIGITS)) < 1e-5


def test_errors_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(NotFittedError, match="Call 'fit'"):
        to_onnx(AEDetector(), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="input_dtype must be one of"):
        to_exported_program(AEDetector(**FAST).fit(DIGITS), input_dtype="float16")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'aedetect\[onnx\]'"):
        to_onnx(AEDetector(**FAST).fit(DIGITS), tmp_path / "x.onnx")
