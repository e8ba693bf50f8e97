"""EnsembleDetector: the members' standardized scores averaged, as a scikit-learn citizen."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aedetect import AEDetector, EnsembleDetector, VAEDetector
from aedetect._persistence import load_detector, save_detector
from aedetect.ensemble import default_estimators, standardization


def small_members():
    return [("ae", AEDetector(max_iter=10)), ("vae", VAEDetector(max_iter=10))]


@pytest.fixture(scope="module")
def cancer():
    """Benign tumours to train on; held-out benign and malignant ones to score."""
    X, y = load_breast_cancer(return_X_y=True)
    benign, malignant = X[y == 1], X[y == 0]
    order = np.random.RandomState(0).permutation(len(benign))
    train, normal = benign[order[:250]], benign[order[250:]]
    test = np.vstack([normal, malignant[:60]])
    outlier = np.r_[np.zeros(len(normal)), np.ones(60)]
    return train, test, outlier


@pytest.fixture(scope="module")
def fitted(cancer):
    return EnsembleDetector(small_members(), random_state=0).fit(cancer[0])


def test_score_is_the_mean_of_the_members_standardized_scores(cancer, fitted):
    train, test, _ = cancer
    columns = []
    for name, member in small_members():
        alone = clone(member).set_params(random_state=0).fit(train)
        scores = alone.score_samples(train)
        center = np.median(scores)
        spread = 1.4826 * np.median(np.abs(scores - center))
        columns.append((alone.score_samples(test) - center) / spread)
        # the ensemble's member is that detector, fitted with the ensemble's seed
        np.testing.assert_array_equal(fitted.named_estimators_[name].score_samples(test),
                                      alone.score_samples(test))
    np.testing.assert_allclose(fitted.member_scores(test), np.column_stack(columns),
                               rtol=1e-12)
    np.testing.assert_allclose(fitted.score_samples(test), np.mean(columns, axis=0),
                               rtol=1e-12)
    # on the training rows each member's standardized score has median 0 and MAD 1/1.4826
    on_train = fitted.member_scores(train)
    np.testing.assert_allclose(np.median(on_train, axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(np.median(np.abs(on_train), axis=0), 1 / 1.4826, rtol=1e-9)


def test_scores_separate_malignant_tumours(cancer):
    """The default members, two seeds: AUC-ROC above a floor (measured 0.898 and 0.908)."""
    train, test, outlier = cancer
    for seed in (0, 1):
        ensemble = EnsembleDetector(random_state=seed).fit(train)
        assert [name for name, _ in default_estimators()] == list(ensemble.named_estimators_)
        assert roc_auc_score(outlier, -ensemble.score_samples(test)) > 0.85


def test_sklearn_contract(cancer, fitted):
    train, test, _ = cancer
    decision = fitted.decision_function(test)
    np.testing.assert_allclose(decision, fitted.score_samples(test) - fitted.offset_)
    np.testing.assert_array_equal(fitted.predict(test), np.where(decision < 0, -1, 1))
    again = EnsembleDetector(small_members(), random_state=0)
    np.testing.assert_array_equal(again.fit_predict(train), fitted.predict(train))
    assert fitted.threshold_ == {"method": "auto", "n_rows": 250}
    share = EnsembleDetector(small_members(), contamination=0.1, random_state=0).fit(train)
    assert abs(np.mean(share.predict(train) == -1) - 0.1) <= 1 / 250
    assert fitted.n_features_in_ == 30 and fitted.input_shape_ == (30,)


def test_same_seed_same_scores_and_seed_changes_them(cancer):
    train, test, _ = cancer
    first = EnsembleDetector(small_members(), random_state=3).fit(train).score_samples(test)
    second = EnsembleDetector(small_members(), random_state=3).fit(train).score_samples(test)
    other = EnsembleDetector(small_members(), random_state=4).fit(train).score_samples(test)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)
    drawn = EnsembleDetector(small_members(), random_state=np.random.RandomState(0))
    seeds = [member.random_state for member in drawn.fit(train).estimators_]
    assert len(set(seeds)) == 2 and all(isinstance(seed, int) for seed in seeds)
    # None keeps each member's own seed
    own = EnsembleDetector([("ae", AEDetector(max_iter=10, random_state=7))]).fit(train)
    assert own.estimators_[0].random_state == 7


def test_device_is_every_members_or_their_own(cancer):
    members = [("ae", AEDetector(max_iter=2, device="cpu")), ("vae", VAEDetector(max_iter=2))]
    placed = EnsembleDetector(members, device="cpu").fit(cancer[0])
    assert [m.device for m in placed.estimators_] == ["cpu", "cpu"]
    assert [str(m.device_) for m in placed.estimators_] == ["cpu", "cpu"]
    own = EnsembleDetector(members).fit(cancer[0])
    assert [m.device for m in own.estimators_] == ["cpu", "auto"]


def test_the_members_given_are_never_fitted(cancer):
    members = small_members()
    EnsembleDetector(members, random_state=0).fit(cancer[0])
    assert not any(hasattr(member, "module_") for _, member in members)
    assert all(member.random_state is None for _, member in members)


def test_nested_parameters_grid_search_and_pipeline(cancer):
    train, test, _ = cancer
    ensemble = EnsembleDetector(small_members())
    params = ensemble.get_params()
    assert params["ae__max_iter"] == 10 and params["vae"] is ensemble.estimators[1][1]
    ensemble.set_params(ae__latent_dim=3, vae=VAEDetector(max_iter=4))
    assert ensemble.estimators[0][1].latent_dim == 3
    assert ensemble.estimators[1][1].max_iter == 4
    assert clone(ensemble).get_params()["vae__max_iter"] == 4

    def mean_score(estimator, X, y=None):
        return float(np.mean(estimator.score_samples(X)))

    search = GridSearchCV(EnsembleDetector(small_members(), random_state=0),
                          {"ae__latent_dim": [2, 4]}, scoring=mean_score, cv=2).fit(train)
    assert search.best_params_["ae__latent_dim"] in (2, 4)
    pipeline = make_pipeline(StandardScaler(), EnsembleDetector(small_members(),
                                                                random_state=0)).fit(train)
    assert pipeline.predict(test).shape == (len(test),)


def test_dataframes_keep_their_column_names(cancer):
    frame = load_breast_cancer(as_frame=True).data.iloc[:250]
    ensemble = EnsembleDetector(small_members(), random_state=0).fit(frame)
    assert list(ensemble.feature_names_in_) == list(frame.columns)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        by_position = ensemble.score_samples(frame.to_numpy())
    np.testing.assert_allclose(ensemble.score_samples(frame), by_position)
    with pytest.raises(ValueError, match="feature names"):
        ensemble.score_samples(frame.rename(columns={"mean radius": "radius"}))


def test_calibrated_false_positive_rate(cancer):
    """calibrate on held-out normal rows: new normal rows flagged at about fpr."""
    X, y = load_breast_cancer(return_X_y=True)
    benign = X[y == 1][np.random.RandomState(1).permutation(int((y == 1).sum()))]
    ensemble = EnsembleDetector(small_members(), random_state=0).fit(benign[:150])
    ensemble.calibrate(benign[150:250], fpr=0.1)
    assert ensemble.threshold_ == {"method": "fpr", "fpr": 0.1, "n_rows": 100}
    flagged = np.mean(ensemble.predict(benign[250:]) == -1)
    # 107 new normal rows: a 99.9% binomial interval around 0.1 is about [0.02, 0.22]
    assert 0.0 < flagged < 0.25
    p_values = ensemble.p_values(benign[250:])
    np.testing.assert_array_equal(p_values <= 0.1, ensemble.predict(benign[250:]) == -1)


def test_failed_fit_keeps_the_previous_fit(cancer, fitted):
    train, test, _ = cancer
    ensemble = EnsembleDetector(small_members(), random_state=0).fit(train)
    before = ensemble.score_samples(test)
    bad = train.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ensemble.fit(bad)
    np.testing.assert_array_equal(ensemble.score_samples(test), before)


@pytest.mark.parametrize("estimators, error, match", [
    ([], ValueError, "at least one member"),
    ([("forest", IsolationForest())], TypeError, "aedetect detectors"),
    ([AEDetector()], ValueError, r"\(name, detector\) tuples"),
    ([("a", AEDetector()), ("a", VAEDetector())], ValueError, "distinct"),
    ([("contamination", AEDetector())], ValueError, "distinct"),
    ([("a__b", AEDetector())], ValueError, "free of '__'"),
])
def test_bad_members_are_named(cancer, estimators, error, match):
    with pytest.raises(error, match=match):
        EnsembleDetector(estimators).fit(cancer[0])


def test_wrong_width_names_the_ensemble(fitted):
    with pytest.raises(ValueError, match="X has 3 features, but EnsembleDetector is "
                                         "expecting 30 features"):
        fitted.score_samples(np.zeros((2, 3)))


def test_saved_without_pickle_and_loaded_exactly(tmp_path, cancer, fitted):
    train, test, _ = cancer
    save_detector(fitted, tmp_path / "model")
    files = sorted(p.relative_to(tmp_path / "model").as_posix()
                   for p in (tmp_path / "model").rglob("*") if p.is_file())
    assert files == ["ensemble.json", "members/0/config.json",
                     "members/0/weights.safetensors", "members/1/config.json",
                     "members/1/weights.safetensors"]
    loaded = load_detector(tmp_path / "model")
    np.testing.assert_array_equal(loaded.score_samples(test), fitted.score_samples(test))
    np.testing.assert_array_equal(loaded.predict(test), fitted.predict(test))
    assert loaded.threshold_ == fitted.threshold_
    with pytest.raises(ValueError, match="never overwritten"):
        save_detector(fitted, tmp_path / "model")
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.score_samples(test), fitted.score_samples(test))


@pytest.mark.parametrize("field, value, match", [
    ("scales", [1.0, -1.0], "positive"),
    ("centers", [0.0], "has 1 values"),
    ("offset", "nan", "finite"),
    ("members", ["a", "a"], "distinct"),
    ("threshold", {"method": "magic"}, "threshold record"),
    ("params", {"contamination": 0.9, "device": None, "random_state": 0}, "contamination"),
    ("params", {"contamination": 0.1, "random_state": 0}, "device"),
])
def test_a_tampered_ensemble_file_is_refused(tmp_path, fitted, field, value, match):
    import json

    save_detector(fitted, tmp_path / "model")
    path = tmp_path / "model" / "ensemble.json"
    config = json.loads(path.read_text())
    config[field] = value
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match) as caught:
        load_detector(tmp_path / "model")
    assert "ensemble.json" in str(caught.value)


def test_unsavable_random_state_is_named(tmp_path, cancer):
    ensemble = EnsembleDetector(small_members(), random_state=np.random.RandomState(0))
    with pytest.raises(ValueError, match="random_state to an int or None"):
        save_detector(ensemble.fit(cancer[0]), tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_standardization_without_spread():
    assert standardization(np.array([1.0, 1.0, 1.0, 5.0])) == (1.0, pytest.approx(
        np.std([1.0, 1.0, 1.0, 5.0])))
    assert standardization(np.ones(4)) == (1.0, 1.0)


def test_export_names_what_to_do_instead(tmp_path, fitted):
    from aedetect.export import to_exported_program

    with pytest.raises(ValueError, match="export each member"):
        to_exported_program(fitted)


def test_explain_splits_the_ensemble_score_by_column(cancer):
    from aedetect.explain import CODE, explain

    train, test, _ = cancer
    members = [("ae", AEDetector(max_iter=10)),
               ("vae", VAEDetector(max_iter=10, scaling="minmax"))]
    ensemble = EnsembleDetector(members, random_state=0).fit(train)
    why = explain(ensemble, test)
    assert list(why.columns) == [f"x{i}" for i in range(30)] + [CODE]
    np.testing.assert_allclose(why.sum(axis=1) + why.attrs["baseline"],
                               -ensemble.score_samples(test), rtol=1e-4, atol=1e-4)
    # a planted error in one column is named by the ensemble's explanation
    row = np.median(train, axis=0)
    row[7] += 40 * train[:, 7].std()
    assert explain(ensemble, row[None]).drop(columns=CODE).iloc[0].idxmax() == "x7"


def test_a_training_row_no_member_can_score_is_an_outlier():
    """A row whose error overflows float32 scores -inf in every member: it is labelled an
    outlier and leaves the standardization and offset_ finite."""
    X = np.random.RandomState(0).normal(size=(200, 4))
    X[0, 0] = 1e30
    members = [("ae", AEDetector(scaling=None, max_iter=3)),
               ("vae", VAEDetector(scaling=None, max_iter=3, likelihood="gaussian_fixed"))]
    ensemble = EnsembleDetector(members, random_state=0)
    with pytest.warns(UserWarning, match="cannot be scored"):
        labels = ensemble.fit_predict(X)
    assert labels[0] == -1 and np.mean(labels[1:] == -1) < 0.2
    assert np.isfinite(ensemble.offset_) and np.isfinite(ensemble.scales_).all()
    assert ensemble.threshold_["n_rows"] == 199
