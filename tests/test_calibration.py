"""Novelty mode on the detectors (``calibrate``, ``p_values``, ``predict_fdr``) and the
promises it measures: calibrated false-positive rates inside their binomial interval,
uniform conformal p-values, a false discovery rate at most its target; the ``threshold_``
record, and how a calibration travels with a saved model."""

import json
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aedetect import AEDetector
from aedetect._persistence import load_detector, save_detector
from aedetect.thresholds import is_threshold_record

N_FEATURES = 5
#: A small, cheap detector: the guarantees hold for any fixed scorer.
CHEAP = {"hidden_layer_sizes": (8,), "latent_dim": 2, "max_iter": 5, "random_state": 0}


def normal_rows(rng, n):
    """Normal data: correlated Gaussian rows near a 2-D plane."""
    mixing = np.random.RandomState(42).normal(size=(2, N_FEATURES))
    return rng.normal(size=(n, 2)) @ mixing + 0.3 * rng.normal(size=(n, N_FEATURES))


def outlier_rows(rng, n):
    """Outliers: normal rows with one feature shifted by 6 (4 to 10 standard deviations)."""
    rows = normal_rows(rng, n)
    rows[np.arange(n), rng.randint(N_FEATURES, size=n)] += 6.0
    return rows


@pytest.fixture(scope="module")
def detector():
    return AEDetector(**CHEAP).fit(normal_rows(np.random.RandomState(0), 400))


def test_predict_agrees_with_p_values_at_the_target(detector):
    rng = np.random.RandomState(3)
    calibrated = detector.calibrate(normal_rows(rng, 150), fpr=0.1)
    X = np.r_[normal_rows(rng, 500), outlier_rows(rng, 50)]
    flagged = calibrated.predict(X) == -1
    np.testing.assert_array_equal(flagged, calibrated.p_values(X) <= 0.1)
    assert flagged[500:].mean() > 0.8 and flagged[:500].mean() < 0.2


# ----------------------------------------------------------------- the promises
@pytest.fixture(scope="module")
def fresh_draws(detector):
    """1,000 repetitions, each with fresh calibration rows (n = 199, fpr = 0.05: exactly
    10 of the 200 ranks are flagged) and one fresh normal test row: its label and its
    p-value. One test row per calibration makes the flags independent Bernoulli(0.05)
    draws and the p-values independent, uniform on {1/200, ..., 1}."""
    flags, p_values = [], []
    for seed in range(1000):
        rng = np.random.RandomState(1000 + seed)
        detector.calibrate(normal_rows(rng, 199), fpr=0.05)
        row = normal_rows(rng, 1)
        flags.append(detector.predict(row)[0] == -1)
        p_values.append(detector.p_values(row)[0])
    return np.array(flags), np.array(p_values)


def test_false_positive_rate_inside_the_binomial_interval(fresh_draws):
    flags, _ = fresh_draws
    low, high = stats.binom.interval(0.99, flags.size, 0.05)
    assert low <= flags.sum() <= high, (flags.sum(), low, high)


@pytest.mark.slow
def test_one_percent_false_positive_rate_for_every_detector(detector_class):
    """fpr = 0.01 on 299 calibration rows (3 of 300 ranks flagged), 3,000 fresh draws."""
    calibrated = detector_class(max_iter=5, random_state=0).fit(
        normal_rows(np.random.RandomState(0), 400))
    flags = 0
    for seed in range(3000):
        rng = np.random.RandomState(20000 + seed)
        calibrated.calibrate(normal_rows(rng, 299), fpr=0.01)
        flags += int(calibrated.predict(normal_rows(rng, 1))[0] == -1)
    low, high = stats.binom.interval(0.99, 3000, 0.01)
    assert low <= flags <= high, (flags, low, high)


def test_p_values_of_normal_rows_are_uniform(fresh_draws):
    _, p_values = fresh_draws
    np.testing.assert_allclose(p_values * 200, np.round(p_values * 200))  # on the grid
    # randomised conformal p-values p - U / (n + 1) are exactly uniform on (0, 1)
    jittered = p_values - np.random.RandomState(0).uniform(size=p_values.size) / 200
    assert stats.kstest(jittered, "uniform").pvalue > 0.01
    assert stats.kstest(p_values, "uniform").statistic < 0.05


def test_fdr_of_planted_outliers_averages_at_most_the_target(detector):
    """300 batches of 100 rows with 10 planted outliers, each against 999 fresh
    calibration rows (so 1 / (n + 1) <= alpha / m: a lone outlier can be flagged).
    BH on conformal p-values promises E[FDP] <= alpha * 90 / 100 = 0.09. The
    margin is three Monte-Carlo standard errors of the mean FDP over the batches
    (one-sided, a 0.13% chance of failing if the true FDR were exactly 0.1)."""
    alpha, fdp, power = 0.1, [], []
    for seed in range(300):
        rng = np.random.RandomState(5000 + seed)
        detector.calibrate(normal_rows(rng, 999), fpr=0.05)
        flagged = detector.predict_fdr(np.r_[normal_rows(rng, 90), outlier_rows(rng, 10)],
                                       alpha) == -1
        fdp.append(flagged[:90].sum() / max(1, flagged.sum()))
        power.append(flagged[90:].mean())
    fdp = np.array(fdp)
    margin = 3 * fdp.std(ddof=1) / np.sqrt(fdp.size)
    assert fdp.mean() <= alpha + margin, (fdp.mean(), margin)
    assert np.mean(power) > 0.5  # it flags most outliers: the bound is not met by doing nothing


# -------------------------------------------------------- the detector's methods
def test_threshold_records_how_offset_was_set():
    X = normal_rows(np.random.RandomState(0), 120)
    fitted = AEDetector(**CHEAP).fit(X)
    assert fitted.threshold_ == {"method": "auto", "n_rows": 120}
    fitted.set_params(contamination=0.1).fit(X)
    assert fitted.threshold_ == {"method": "contamination", "contamination": 0.1, "n_rows": 120}
    fitted.calibrate(normal_rows(np.random.RandomState(1), 60), fpr=0.1)
    assert fitted.threshold_ == {"method": "fpr", "fpr": 0.1, "n_rows": 60}
    assert fitted.calibration_scores_.shape == (60,)
    assert is_threshold_record(fitted.threshold_)
    fitted.fit(X)  # a refit forgets the calibration
    assert fitted.threshold_["method"] == "contamination"
    assert not hasattr(fitted, "calibration_scores_")
    with pytest.raises(NotFittedError, match=r"call calibrate\(X_normal, fpr\)"):
        fitted.p_values(X)


def test_calibrate_errors_leave_the_detector_unchanged(detector):
    before = (detector.offset_, detector.threshold_)
    few = normal_rows(np.random.RandomState(2), 50)
    with pytest.raises(ValueError, match="needs at least 99 held-out normal rows.* got 50"):
        detector.calibrate(few, fpr=0.01)
    with pytest.raises(TypeError, match="fpr must be a float"):
        detector.calibrate(few, fpr=None)
    huge = few.copy()
    huge[7, 1] = 1e25  # fits float32, but its squared error overflows
    with pytest.raises(ValueError, match=r"cannot be scored.*rows 7\)"):
        detector.calibrate(huge, fpr=0.1)
    with pytest.raises(ValueError, match="X has 4 features"):
        detector.calibrate(few[:, :4], fpr=0.1)
    assert (detector.offset_, detector.threshold_) == before


def test_predict_fdr_warns_when_the_calibration_is_too_small_for_the_batch(detector):
    rng = np.random.RandomState(4)
    batch = np.r_[normal_rows(rng, 49), outlier_rows(rng, 1)]
    detector.calibrate(normal_rows(rng, 200), fpr=0.1)  # 1 / 201 > 0.1 / 50
    with pytest.warns(UserWarning, match="unless at least 3 rows .* at least 499 held-out"):
        assert (detector.predict_fdr(batch, alpha=0.1) == 1).all()
    detector.calibrate(normal_rows(rng, 499), fpr=0.1)  # 1 / 500 = 0.1 / 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert detector.predict_fdr(batch, alpha=0.1)[-1] == -1


def test_score_type_must_be_the_fitted_one():
    rng = np.random.RandomState(0)
    fitted = AEDetector(score_type="combined", **CHEAP).fit(normal_rows(rng, 120))
    fitted.calibrate(normal_rows(rng, 60), fpr=0.1).set_params(score_type="latent")
    for call in (lambda: fitted.calibrate(normal_rows(rng, 60), fpr=0.1),
                 lambda: fitted.p_values(normal_rows(rng, 5)),
                 lambda: fitted.predict_fdr(normal_rows(rng, 5))):
        with pytest.raises(ValueError, match="score_type_='combined'.*Set score_type back"):
            call()
    fitted.set_params(score_type="combined").predict_fdr(normal_rows(rng, 5))


def test_calibrate_the_detector_of_a_pipeline():
    rng = np.random.RandomState(0)
    pipe = make_pipeline(StandardScaler(), AEDetector(scaling=None, **CHEAP))
    pipe.fit(normal_rows(rng, 200))
    pipe[-1].calibrate(pipe[:-1].transform(normal_rows(rng, 499)), fpr=0.1)
    X = np.r_[normal_rows(rng, 40), outlier_rows(rng, 10)]
    np.testing.assert_array_equal(pipe.predict(X) == -1,
                                  pipe[-1].p_values(pipe[:-1].transform(X)) <= 0.1)
    assert (pipe[-1].predict_fdr(pipe[:-1].transform(X), alpha=0.1)[40:] == -1).mean() > 0.5


def test_calibration_travels_with_the_saved_model(tmp_path):
    rng = np.random.RandomState(0)
    fitted = AEDetector(**CHEAP).fit(normal_rows(rng, 120)).calibrate(normal_rows(rng, 400),
                                                                      fpr=0.1)
    save_detector(fitted, tmp_path / "model")
    loaded = load_detector(tmp_path / "model")
    X = np.r_[normal_rows(rng, 30), outlier_rows(rng, 5)]
    assert loaded.threshold_ == fitted.threshold_ and loaded.offset_ == fitted.offset_
    np.testing.assert_array_equal(loaded.p_values(X), fitted.p_values(X))
    np.testing.assert_array_equal(loaded.predict_fdr(X), fitted.predict_fdr(X))


@pytest.mark.filterwarnings("ignore:.*An input example was not provided")
def test_mlflow_model_labels_with_the_calibrated_threshold(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from aedetect import tracking

    rng = np.random.RandomState(0)
    fitted = AEDetector(**CHEAP).fit(normal_rows(rng, 120)).calibrate(normal_rows(rng, 40),
                                                                      fpr=0.1)
    tracking.save_model(fitted, tmp_path / "model")
    X = np.r_[normal_rows(rng, 30), outlier_rows(rng, 5)]
    out = mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(X)
    np.testing.assert_array_equal(out["label"], fitted.predict(X))
    loaded = tracking.load_model(str(tmp_path / "model"))
    assert loaded.threshold_ == {"method": "fpr", "fpr": 0.1, "n_rows": 40}
    np.testing.assert_array_equal(loaded.p_values(X), fitted.p_values(X))


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["attributes"]["threshold_"].update(n_rows=39),
     r"'array:calibration_scores_' has shape \(40,\), expected \(39,\)"),
    (lambda c: c["attributes"]["threshold_"].update(fpr=0.2),
     "must be sorted and give offset_"),
    (lambda c: c["attributes"].update(offset_=c["attributes"]["offset_"] - 1),
     "must be sorted and give offset_"),
    (lambda c: c["attributes"]["threshold_"].update(method="auto"),
     "threshold_ must be a record"),
    (lambda c: c["attributes"]["threshold_"].update(fpr=0.01),  # 40 rows cannot reach 0.01
     "threshold_ must be a record"),
    (lambda c: c["attributes"].update(threshold_={"method": "contamination",
                                                  "contamination": 0.1, "n_rows": 40}),
     r"\['array:calibration_scores_'\] unexpected"),
])
def test_tampered_calibrations_are_refused(tmp_path, edit, message):
    rng = np.random.RandomState(0)
    fitted = AEDetector(**CHEAP).fit(normal_rows(rng, 120)).calibrate(normal_rows(rng, 40),
                                                                      fpr=0.1)
    save_detector(fitted, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    edit(config)
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        load_detector(tmp_path / "model")


def test_unsorted_calibration_scores_are_refused_and_old_files_load(tmp_path):
    from safetensors.torch import load_file, save_file

    rng = np.random.RandomState(0)
    fitted = AEDetector(**CHEAP).fit(normal_rows(rng, 120))
    save_detector(fitted.calibrate(normal_rows(rng, 40), fpr=0.1), tmp_path / "calibrated")
    weights = tmp_path / "calibrated" / "weights.safetensors"
    tensors = load_file(str(weights))
    tensors["array:calibration_scores_"] = tensors["array:calibration_scores_"].flip(0)
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match="calibration_scores_' must be sorted"):
        load_detector(tmp_path / "calibrated")
    # a file saved before threshold_ existed loads, in outlier mode
    save_detector(fitted.fit(normal_rows(rng, 120)), tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["attributes"]["threshold_"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    loaded = load_detector(tmp_path / "old")
    assert not hasattr(loaded, "threshold_") and loaded.offset_ == fitted.offset_
