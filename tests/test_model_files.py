"""Saved detectors are untrusted input: loading checks every field, imports nothing,
and refuses with a ValueError naming the file and the field; saving is atomic."""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import aedetect._persistence
from aedetect import AAEDetector, AEDetector, VAEDetector
from aedetect._persistence import load_detector, save_detector

X = np.random.RandomState(0).normal(size=(120, 6))
FAST = {"max_iter": 2, "random_state": 0}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved AEDetector (latent scores: a variable-size buffer) and its scores."""
    detector = AEDetector(score_type="combined", **FAST).fit(X)
    path = tmp_path_factory.mktemp("saved") / "model"
    save_detector(detector, path)
    return path, detector.score_samples(X)


def _copy(saved, tmp_path):
    path, _ = saved
    target = tmp_path / "copy"
    target.mkdir(parents=True)
    for name in ("config.json", "weights.safetensors"):
        (target / name).write_bytes((path / name).read_bytes())
    return target


def _edit_config(path, edit):
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))


def _edit_weights(path, edit):
    tensors = load_file(str(path / "weights.safetensors"))
    edit(tensors)
    save_file(tensors, str(path / "weights.safetensors"))


@pytest.mark.parametrize("cls, params", [(AEDetector, {}), (VAEDetector, {}),
                                         (AAEDetector, {}), (AAEDetector, {"prior": "mixture"}),
                                         (VAEDetector, {"score_type": "latent"})])
def test_round_trip_scores_bit_for_bit(cls, params, tmp_path):
    detector = cls(**FAST, **params).fit(X)
    save_detector(detector, tmp_path / "model")
    loaded = load_detector(tmp_path / "model")
    np.testing.assert_array_equal(loaded.score_samples(X), detector.score_samples(X))


def test_conditional_aae_with_numeric_and_string_classes(tmp_path):
    y = np.arange(X.shape[0]) % 3
    for labels, name in ((y, "numeric"), (np.array(["a", "b", "c"])[y], "strings")):
        detector = AAEDetector(conditional=True, latent_dim=2, **FAST).fit(X, labels)
        save_detector(detector, tmp_path / name)
        loaded = load_detector(tmp_path / name)
        np.testing.assert_array_equal(loaded.classes_, detector.classes_)
        np.testing.assert_array_equal(loaded.score_samples(X), detector.score_samples(X))


CLASS_NAMES = ["aedetect.__main__:AEDetector", "torch:_dynamo.X", "sklearn:ensemble.X",
               "aedetect.ae:AEDetectorX", "aedetect.ae:AEDetector.__init__", "os:system", 42]


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_only_public_detector_classes_by_exact_name(saved, tmp_path, name):
    path = _copy(saved, tmp_path)
    _edit_config(path, lambda config: config.update({"class": name}))
    before = set(sys.modules)
    with pytest.raises(ValueError, match=r"config.json: class .* is not a detector"):
        load_detector(path)
    assert set(sys.modules) == before  # nothing was imported


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["attributes"].update(offset_=float("nan")), "offset_ must be a finite number"),
    (lambda c: c["attributes"].update(offset_="0.1"), "offset_ must be a finite number"),
    (lambda c: c["attributes"].update(injected_=1), r"\['injected_'\] are not fitted attributes"),
    (lambda c: c["attributes"].pop("n_features_in_"), "n_features_in_ is missing"),
    (lambda c: c["attributes"].update(n_features_in_=7), "input_shape_ .* does not hold"),
    (lambda c: c["attributes"].update(score_type_="mystery"), "score_type_ 'mystery'"),
    (lambda c: c["params"].update(contamination=0.9), "The 'contamination' parameter"),
    (lambda c: c["params"].update(evil=1), r"\['evil'\] are not parameters"),
    (lambda c: c.update(format_version=99), "format_version 99"),
    (lambda c: c.update(params=[]), "field 'params' must be a JSON dict"),
    (lambda c: c["attributes"].update(hidden_layer_sizes_={"__tuple__": [20000, 20000]}),
     "weights.safetensors: tensor .* has shape"),
    (lambda c: c["attributes"].update(device_={"__device__": "quantum"}), "cannot be decoded"),
])
def test_tampered_configs_are_refused(saved, tmp_path, edit, message):
    path = _copy(saved, tmp_path)
    _edit_config(path, edit)
    with pytest.raises(ValueError, match=message):
        load_detector(path)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update({"array:center_": torch.zeros(5, dtype=torch.float64)}),
     r"'array:center_' has shape \(5,\), expected \(6,\)"),
    (lambda t: t.update({"array:scale_": torch.zeros(6, dtype=torch.float64)}),
     "'array:scale_' must be positive"),
    (lambda t: t["module:encoder.head.weight"].fill_(float("nan")),
     "'module:encoder.head.weight' holds non-finite values"),
    (lambda t: t.update({"module:encoder.head.weight": t["module:encoder.head.weight"].double()}),
     "has dtype F64, expected torch.float32"),
    (lambda t: t.pop("module:combined_scale"), r"\['module:combined_scale'\] are missing"),
    (lambda t: t.update({"module:extra": torch.zeros(2)}), r"\['module:extra'\] unexpected"),
])
def test_tampered_weights_are_refused(saved, tmp_path, edit, message):
    path = _copy(saved, tmp_path)
    _edit_weights(path, edit)
    with pytest.raises(ValueError, match=message):
        load_detector(path)


def test_a_huge_declared_layer_is_refused_before_any_allocation(saved, tmp_path):
    path = _copy(saved, tmp_path)
    _edit_config(path, lambda c: c["attributes"].update(
        hidden_layer_sizes_={"__tuple__": [200_000, 200_000]}))  # 160 GB of float32
    with pytest.raises(ValueError, match="has shape"):
        load_detector(path)


def test_missing_and_malformed_files(saved, tmp_path):
    path = _copy(saved, tmp_path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_detector(path)
    path = _copy(saved, tmp_path / "b")
    (path / "weights.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="weights.safetensors: not a readable safetensors"):
        load_detector(path)
    (path / "weights.safetensors").unlink()
    with pytest.raises(ValueError, match="weights.safetensors: the file does not exist"):
        load_detector(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_detector(tmp_path / "nowhere")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(["params", "attributes", None]), key=st.text(max_size=20),
       value=JSON, data=st.data())
def test_fuzzed_configs_raise_only_value_errors_and_import_nothing(saved, tmp_path, section,
                                                                    key, value, data):
    path = _copy(saved, Path(tempfile.mkdtemp(dir=tmp_path)))
    config = json.loads((path / "config.json").read_text())
    target = config if section is None else config[section]
    existing = sorted(target)
    if existing and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(existing))
    target[key] = value
    (path / "config.json").write_text(json.dumps(config))
    before = set(sys.modules)
    try:
        load_detector(path)
    except ValueError:
        pass
    assert not [name for name in set(sys.modules) - before if not name.startswith("aedetect")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_weights_raise_only_value_errors(saved, tmp_path, data):
    path = _copy(saved, Path(tempfile.mkdtemp(dir=tmp_path)))
    raw = bytearray((path / "weights.safetensors").read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    (path / "weights.safetensors").write_bytes(bytes(raw))
    try:
        loaded = load_detector(path)
    except ValueError:
        return
    try:  # a flip inside a weight loads: its scores are finite, or refused by row
        assert np.all(np.isfinite(loaded.score_samples(X)))
    except ValueError as error:
        assert "cannot be scored" in str(error)


def test_saving_is_atomic_and_never_overwrites(saved, tmp_path, monkeypatch):
    detector = load_detector(saved[0])
    target = tmp_path / "model"

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(aedetect._persistence, "save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_detector(detector, target)
    assert not target.exists() and list(tmp_path.iterdir()) == []  # nothing left behind
    monkeypatch.undo()
    save_detector(detector, target)  # the retry works
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(ValueError, match="already exists and is not empty"):
        save_detector(AEDetector(**FAST).fit(X[::-1]), target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    np.testing.assert_array_equal(load_detector(target).score_samples(X), saved[1])
