"""Per-column contributions: they add up to the score, and they name a planted
corruption."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as sklearn_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from aedetect import AAEDetector, AEDetector, VAEDetector
from aedetect.explain import CODE, explain
from aedetect.preprocessing import make_pipeline

SCORE_TYPES = [(AEDetector, "reconstruction", {}), (AEDetector, "latent", {}),
               (AEDetector, "combined", {}), (VAEDetector, "elbo", {}),
               (VAEDetector, "iwae", {}), (VAEDetector, "reconstruction", {}),
               (VAEDetector, "latent", {}), (VAEDetector, "elbo", {"likelihood": "gaussian_fixed"}),
               (AAEDetector, "combined", {}), (AAEDetector, "reconstruction", {}),
               (AAEDetector, "latent", {}), (AAEDetector, "combined", {"conditional": True})]


@pytest.mark.parametrize("cls, score_type, extra", SCORE_TYPES)
def test_contributions_add_up_to_the_anomaly_score(cls, score_type, extra):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 4)) @ rng.normal(size=(4, 4))
    y = (X[:, 0] > 0).astype(int) if extra.get("conditional") else None
    detector = cls(max_iter=3, score_type=score_type, random_state=0, **extra).fit(X, y)
    contributions = explain(detector, X[:30])
    has_code = score_type != "reconstruction"
    assert list(contributions.columns) == ["x0", "x1", "x2", "x3"] + [CODE] * has_code
    total = contributions.sum(axis=1) + contributions.attrs["baseline"]
    np.testing.assert_allclose(total, -detector.score_samples(X[:30]), rtol=1e-5, atol=1e-5)
    if score_type in ("reconstruction", "combined", "elbo"):
        assert (contributions[["x0", "x1", "x2", "x3"]].to_numpy() >= 0).all()
    if score_type == "latent":
        assert (contributions[["x0", "x1", "x2", "x3"]].to_numpy() == 0).all()


def test_bernoulli_vae_terms_add_up():
    X = np.random.RandomState(1).rand(80, 6)
    detector = VAEDetector(likelihood="bernoulli", scaling="minmax", max_iter=3,
                           random_state=0).fit(X)
    contributions = explain(detector, X)
    assert contributions.attrs["baseline"] == 0.0
    np.testing.assert_allclose(contributions.sum(axis=1), -detector.score_samples(X), rtol=1e-5)


def mixed_table(n=200, seed=0):
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame({"size": rng.normal(10, 2, n), "weight": rng.normal(size=n),
                          "color": rng.choice(["red", "green", "blue"], n)},
                         index=[f"row{i}" for i in range(n)])
    frame["weight"] += frame["size"]
    frame.loc[frame.index[::9], "size"] = np.nan
    return frame


def test_pipeline_contributions_are_in_the_users_columns():
    table = mixed_table()
    pipe = make_pipeline(AAEDetector(max_iter=5, random_state=0)).fit(table)
    rows = table.iloc[[5, 3, 9]]
    contributions = explain(pipe, rows)
    assert list(contributions.columns) == ["size", "weight", "color", CODE]
    assert list(contributions.index) == ["row5", "row3", "row9"]
    total = contributions.sum(axis=1) + contributions.attrs["baseline"]
    np.testing.assert_allclose(total, -pipe.score_samples(rows), rtol=1e-5, atol=1e-6)
    # the one-hot columns of 'color' and the indicator of 'size' are summed back
    detector_terms = explain(pipe[-1], pipe[0].transform(rows))
    names = list(pipe[0].get_feature_names_out())
    color = [f"x{i}" for i, name in enumerate(names) if "color" in name]
    size = [f"x{i}" for i, name in enumerate(names) if "size" in name]
    assert len(color) == 4 and len(size) == 2     # 3 colors and the infrequent/unseen one
    np.testing.assert_allclose(contributions["color"], detector_terms[color].sum(axis=1))
    np.testing.assert_allclose(contributions["size"], detector_terms[size].sum(axis=1))


def test_scikit_learn_preprocessing_is_traced_back():
    table = mixed_table()
    encode = ColumnTransformer([
        ("num", sklearn_pipeline(SimpleImputer(add_indicator=True), StandardScaler()),
         ["size", "weight"]),
        ("cat", OneHotEncoder(sparse_output=False, handle_unknown="ignore"), ["color"])])
    pipe = Pipeline([("encode", encode), ("detector", AEDetector(scaling=None, max_iter=5,
                                                                 random_state=0))]).fit(table)
    contributions = explain(pipe, table.head(10))
    assert list(contributions.columns) == ["size", "weight", "color"]
    np.testing.assert_allclose(contributions.sum(axis=1), -pipe.score_samples(table.head(10)),
                               rtol=1e-5)


def test_untraceable_steps_and_other_estimators_are_refused():
    X = np.random.RandomState(0).normal(size=(60, 4))
    pipe = sklearn_pipeline(PCA(3), AEDetector(max_iter=2, random_state=0)).fit(X)
    with pytest.raises(ValueError, match="cannot tell which input column.*PCA"):
        explain(pipe, X)
    with pytest.raises(TypeError, match="explain needs an aedetect detector"):
        explain(PCA(2).fit(X), X)
    with pytest.raises(NotFittedError):
        explain(AEDetector(), X)


def corrupted_breast_cancer(shift=6.0, seed=0):
    """load_breast_cancer's 30 measurements plus a 'size class' category (the tertile of
    the mean radius; a rare 'giant' in 3 of the 400 training rows). In the 169 test rows
    one cell each is corrupted: every fourth row gets the rare category, the others one
    measurement shifted by ``shift`` robust standard deviations (IQR / 1.349) up or down.
    Returns (train, corrupted test rows, the corrupted column of each)."""
    data = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    rng = np.random.RandomState(seed)
    table = data.assign(**{"size class": pd.qcut(data["mean radius"], 3,
                                                 labels=["small", "medium", "large"]).astype(str)})
    order = rng.permutation(len(table))
    train, test = table.iloc[order[:400]].copy(), table.iloc[order[400:]].copy()
    train.iloc[:3, train.columns.get_loc("size class")] = "giant"
    measures = list(data.columns)
    spread = (train[measures].quantile(0.75) - train[measures].quantile(0.25)) / 1.349
    planted = []
    for i, index in enumerate(test.index):
        if i % 4 == 0:
            test.loc[index, "size class"] = "giant"
            planted.append("size class")
        else:
            column = measures[rng.randint(len(measures))]
            test.loc[index, column] += rng.choice([-1, 1]) * shift * spread[column]
            planted.append(column)
    return train, test, np.array(planted)


@pytest.mark.parametrize("cls", [AEDetector, VAEDetector, AAEDetector])
def test_a_planted_corruption_is_named_first(cls):
    """Measured (seed 0, 6 robust sd): AE 0.994, VAE 0.941, AAE 0.970 of the 169 rows;
    the rare category alone: 1.00, 0.98, 0.98; the shifts alone: 0.99, 0.93, 0.97."""
    train, test, planted = corrupted_breast_cancer()
    pipe = make_pipeline(cls(random_state=0)).fit(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # the shifted cells are outliers by design
        contributions = explain(pipe, test)
    first = contributions.idxmax(axis=1).to_numpy()
    assert (first == planted).mean() >= 0.9
    rare = planted == "size class"
    assert (first[rare] == "size class").mean() >= 0.85
    assert (first[~rare] == planted[~rare]).mean() >= 0.85
    # on the clean rows the first column is spread out, not one column every time
    clean = explain(pipe, train.iloc[3:]).drop(columns=CODE, errors="ignore").idxmax(axis=1)
    assert clean.value_counts(normalize=True).iloc[0] < 0.5   # measured: 0.11 to 0.32


def test_a_pipeline_fitted_on_an_array_names_columns_by_position():
    X = np.random.RandomState(0).normal(size=(100, 3))
    X[::10, 1] = np.nan                       # x1 gets a missing-value indicator
    pipe = make_pipeline(AEDetector(max_iter=3, random_state=0)).fit(X)
    contributions = explain(pipe, X[:20])
    assert list(contributions.columns) == ["x0", "x1", "x2"]
    assert list(contributions.index) == list(range(20))
    np.testing.assert_allclose(contributions.sum(axis=1), -pipe.score_samples(X[:20]),
                               rtol=1e-5)
