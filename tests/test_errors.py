"""Bad input gets a scikit-learn style error naming the problem; nothing is lost."""

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from aedetect import AEDetector

X_GOOD = np.random.RandomState(0).normal(size=(60, 5))


@pytest.fixture(scope="module")
def fitted():
    return AEDetector(max_iter=5, random_state=0).fit(X_GOOD)


@pytest.mark.parametrize("bad, message", [
    (np.where(np.eye(60, 5) > 0, np.nan, X_GOOD), "NaN"),
    (np.where(np.eye(60, 5) > 0, np.inf, X_GOOD), "infinity"),
    (np.array([["a", "b"], ["c", "d"]], dtype=object), "could not convert"),
    (X_GOOD.astype(complex), "Complex data not supported"),
    (np.empty((0, 5)), "0 sample"),
    (np.empty((60, 0)), "0 feature"),
    (X_GOOD[:1], "1 sample"),
    (X_GOOD[:, 0], "Expected 2D array, got 1D array instead"),
])
def test_fit_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        AEDetector(max_iter=2).fit(bad)


@pytest.mark.parametrize("method", ["score_samples", "decision_function", "predict",
                                    "transform", "reconstruct"])
@pytest.mark.parametrize("bad, message", [
    (X_GOOD[:, :4], "X has 4 features, but AEDetector is expecting 5 features"),
    (X_GOOD[0], "Expected 2D array, got 1D array instead"),
    (np.full((2, 5), np.nan), "NaN"),
])
def test_scoring_rejects_bad_input_and_keeps_the_fit(fitted, method, bad, message):
    before = fitted.score_samples(X_GOOD)
    with pytest.raises(ValueError, match=message):
        getattr(fitted, method)(bad)
    np.testing.assert_array_equal(fitted.score_samples(X_GOOD), before)


def test_wrong_column_names_at_score_time():
    frame = pd.DataFrame(X_GOOD, columns=list("abcde"))
    detector = AEDetector(max_iter=2, random_state=0).fit(frame)
    with pytest.raises(ValueError, match="feature names"):
        detector.score_samples(frame[list("edcba")])


@pytest.mark.parametrize("params, message", [
    ({"contamination": 0.7}, "The 'contamination' parameter of AEDetector must be"),
    ({"contamination": 0.0}, "The 'contamination' parameter of AEDetector must be"),
    ({"contamination": "most"}, "The 'contamination' parameter of AEDetector must be"),
    ({"max_iter": 0}, "The 'max_iter' parameter of AEDetector must be"),
    ({"max_iter": 2.5}, "The 'max_iter' parameter of AEDetector must be"),
    ({"batch_size": 0}, "The 'batch_size' parameter"),
    ({"activation": "swish"}, "The 'activation' parameter"),
    ({"learning_rate_init": -1.0}, "The 'learning_rate_init' parameter"),
    ({"hidden_layer_sizes": (8, -2)}, "hidden_layer_sizes must be a sequence of positive ints"),
    ({"image_shape": (2, 2)}, "image_shape=\\(2, 2\\) holds 4 values but X has 5 features"),
    ({"device": "gpu:zero"}, "not a valid torch device"),
    ({"dropout": "none"}, "The 'dropout' parameter of AEDetector must be"),
    ({"batch_norm": "yes"}, "The 'batch_norm' parameter of AEDetector must be"),
    ({"score_type": "knn"}, "The 'score_type' parameter of AEDetector must be"),
    ({"n_neighbors": 0}, "The 'n_neighbors' parameter of AEDetector must be"),
])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        AEDetector(**params).fit(X_GOOD)


def test_not_fitted_error_names_the_class():
    with pytest.raises(NotFittedError, match="This AEDetector instance is not fitted yet"):
        AEDetector().score_samples(X_GOOD)


def test_failed_refit_keeps_previous_state(fitted):
    before = fitted.score_samples(X_GOOD)
    offset = fitted.offset_
    with pytest.raises(ValueError):
        fitted.fit(np.full((10, 5), np.nan))
    with pytest.raises(ValueError, match="max_iter"):
        fitted.set_params(max_iter=0).fit(X_GOOD)
    fitted.set_params(max_iter=5)
    assert fitted.offset_ == offset
    np.testing.assert_array_equal(fitted.score_samples(X_GOOD), before)


@pytest.mark.parametrize("learning_rate, message", [
    (1e6, r"diverged at epoch \d+: the loss exploded from"),  # finite, but 1e25 times larger
    (1e36, r"diverged at epoch \d+: loss became non-finite"),
])
def test_divergence_stops_with_clear_error_and_keeps_state(learning_rate, message):
    detector = AEDetector(max_iter=3, random_state=0).fit(X_GOOD)
    before = detector.score_samples(X_GOOD)
    detector.set_params(learning_rate_init=learning_rate, max_iter=30)
    with pytest.raises(ValueError, match=message):
        detector.fit(X_GOOD)
    np.testing.assert_array_equal(detector.score_samples(X_GOOD), before)
    assert detector.learning_rate_init == learning_rate and detector.n_iter_ == 3


def test_a_training_row_that_cannot_be_scored_is_an_outlier():
    huge = X_GOOD.copy()
    huge[0, 0] = 1e30  # fits in float32, but its squared error overflows
    detector = AEDetector(scaling=None, max_iter=3, random_state=0)
    with pytest.warns(UserWarning, match=r"1 training row\(s\) cannot be scored \(rows 0\)"):
        labels = detector.fit_predict(huge)
    assert labels[0] == -1 and np.isfinite(detector.offset_)
    assert np.mean(labels[1:] == -1) < 0.2


def test_constructor_takes_known_keywords_only():
    with pytest.raises(TypeError, match="keyword arguments only"):
        AEDetector(3)
    with pytest.raises(TypeError, match="unexpected keyword argument.*'latnt_dim'.*latent_dim"):
        AEDetector(latnt_dim=3)


def _with_cell(value, row=7, column=2):
    X = X_GOOD.copy()
    X[row, column] = value
    return X


@pytest.mark.parametrize("method", ["score_samples", "decision_function", "predict",
                                    "transform", "reconstruct"])
def test_values_beyond_float32_are_refused_by_row_and_column(fitted, method):
    before = fitted.score_samples(X_GOOD)
    with pytest.raises(ValueError, match=r"X\[7, 2\] = 1e\+39 does not fit in float32"):
        getattr(fitted, method)(_with_cell(1e39))
    frame = pd.DataFrame(_with_cell(-1e39), columns=list("abcde"))
    named = AEDetector(max_iter=2, random_state=0).fit(frame.iloc[10:])
    with pytest.raises(ValueError, match=r"X\[7, 'c'\] = -1e\+39"):
        getattr(named, method)(frame)
    np.testing.assert_array_equal(fitted.score_samples(X_GOOD), before)


@pytest.mark.parametrize("method", ["score_samples", "decision_function", "predict"])
def test_a_score_that_cannot_be_computed_is_never_an_inlier(fitted, method):
    # 1e30 fits in float32 but its squared error overflows: no NaN, no label, an error
    with pytest.raises(ValueError, match=r"1 row\(s\) cannot be scored.*rows 7\)"):
        getattr(fitted, method)(_with_cell(1e30))


def test_fit_refuses_values_beyond_float32(fitted):
    before = fitted.score_samples(X_GOOD)
    with pytest.raises(ValueError, match=r"X\[7, 2\] = 1e\+39 does not fit in float32"):
        fitted.fit(_with_cell(1e39))
    np.testing.assert_array_equal(fitted.score_samples(X_GOOD), before)


@pytest.mark.parametrize("cls_name, params, data, message", [
    ("AEDetector", {"batch_size": True}, None, "The 'batch_size' parameter .* int .* Got True"),
    ("AEDetector", {"latent_dim": True}, None, "The 'latent_dim' parameter .* Got True"),
    ("AEDetector", {"max_iter": True}, None, "The 'max_iter' parameter .* Got True"),
    ("VAEDetector", {"n_draws": False}, None, "The 'n_draws' parameter .* Got False"),
    ("AEDetector", {"batch_size": 1}, None, "batch_size=1 cannot train with batch norm"),
    ("AAEDetector", {"discriminator_layer_sizes": (0,)}, None,
     r"discriminator_layer_sizes must be a sequence of positive ints.*\(0,\)"),
    ("AAEDetector", {"discriminator_layer_sizes": (-3,)}, None,
     "discriminator_layer_sizes must be a sequence of positive ints"),
    ("AEDetector", {"hidden_layer_sizes": (8, True)}, None,
     "hidden_layer_sizes must be a sequence of positive ints"),
    ("AEDetector", {"architecture": "conv"}, np.zeros((10, 8, 8, 3)),
     r"channels-last images.*X.transpose\(0, 3, 1, 2\)"),
])
def test_parameter_mistakes_get_a_named_error(cls_name, params, data, message):
    import aedetect

    detector = getattr(aedetect, cls_name)(**{"max_iter": 1, **params})
    with pytest.raises(ValueError, match=message):
        detector.fit(X_GOOD if data is None else data)


def test_batch_size_one_trains_without_batch_norm():
    detector = AEDetector(batch_size=1, batch_norm=False, max_iter=1, random_state=0)
    assert detector.fit(X_GOOD[:20]).n_iter_ == 1


def test_an_overcomplete_code_warns():
    with pytest.warns(UserWarning, match="latent_dim=5 is not smaller than the 5 features"):
        AEDetector(latent_dim=5, max_iter=1).fit(X_GOOD)
