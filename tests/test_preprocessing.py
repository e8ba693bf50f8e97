"""TableEncoder and make_pipeline: mixed columns, missing values and their edge cases."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from aedetect import AEDetector
from aedetect.preprocessing import UNSEEN, TableEncoder, column_kind, make_pipeline


def mixed_table(n=200, seed=0):
    """Every kind of column TableEncoder takes, with gaps in most of them."""
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame({
        "color": rng.choice(["red", "green", "blue"], n),
        "shape": pd.Categorical(rng.choice(["round", "square"], n)),
        "count": pd.array(rng.randint(0, 9, n), dtype="Int64"),
        "flag": pd.array(rng.rand(n) > 0.5, dtype="boolean"),
        "plain_bool": rng.rand(n) > 0.3,
        "size": rng.normal(10, 2, n),
    })
    frame.loc[3, "count"] = pd.NA
    frame.loc[4, "flag"] = pd.NA
    frame.loc[5, "color"] = None
    frame.loc[6, "shape"] = np.nan
    frame.loc[[7, 8], "size"] = np.nan
    frame.loc[9, "color"] = "violet"   # rare: 1 row of 200 is under min_frequency=0.01
    return frame


@pytest.fixture(scope="module")
def fitted():
    table = mixed_table()
    return table, TableEncoder().fit(table)


def test_mixed_table_is_encoded_dense_with_indicators(fitted):
    table, encoder = fitted
    encoded = encoder.transform(table)
    names = list(encoder.get_feature_names_out())
    assert encoded.dtype == np.float64 and np.isfinite(encoded).all()
    assert encoded.shape == (200, len(names))
    assert encoder.column_kinds_ == {"color": "categorical", "shape": "categorical",
                                     "count": "numeric", "flag": "boolean",
                                     "plain_bool": "boolean", "size": "numeric"}
    # missing values: imputed with the median, and flagged by an indicator column
    size, indicator = names.index("numeric__size"), names.index("numeric__missingindicator_size")
    assert encoded[[7, 8], indicator].tolist() == [1.0, 1.0] and encoded[:, indicator].sum() == 2
    assert encoded[7, size] == pytest.approx(np.nanmedian(table["size"]))
    assert "numeric__missingindicator_plain_bool" not in names   # no gap: no indicator
    # the rare category and the missing color are grouped as infrequent
    assert "categorical__color_infrequent_sklearn" in names
    assert encoded[[5, 9], names.index("categorical__color_infrequent_sklearn")].tolist() == [1, 1]


def test_nullable_dtypes_encode_like_numpy(fitted):
    table, encoder = fitted
    numpy_table = table.copy()
    numpy_table["count"] = table["count"].astype("float64")       # pd.NA -> NaN
    numpy_table["flag"] = table["flag"].astype(object)             # True/False/NA objects
    numpy_table["shape"] = table["shape"].astype(object)
    np.testing.assert_array_equal(encoder.transform(numpy_table), encoder.transform(table))


def test_columns_in_any_order_but_not_missing_or_extra(fitted):
    table, encoder = fitted
    np.testing.assert_array_equal(encoder.transform(table[table.columns[::-1]]),
                                  encoder.transform(table))
    with pytest.raises(ValueError, match=r"missing \['size'\]"):
        encoder.transform(table.drop(columns="size"))
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        encoder.transform(table.assign(extra=1.0))


def test_unseen_category_warns_naming_the_column(fitted):
    table, encoder = fitted
    new = table.head(3).copy()
    new.loc[0, "color"] = "purple"
    with pytest.warns(UserWarning, match=r"Column 'color': 1 row\(s\).*'purple'.*infrequent"):
        encoded = encoder.transform(new)
    names = list(encoder.get_feature_names_out())
    colors = [i for i, name in enumerate(names) if name.startswith("categorical__color_")]
    np.testing.assert_array_equal(encoded[0, colors],      # like the rare 'violet'
                                  encoder.transform(table.loc[[9]])[0, colors])
    assert encoded[0, names.index("categorical__color_infrequent_sklearn")] == 1.0
    # without rare categories in fit, an unseen one sets a column that is 0 in fit
    plain = pd.DataFrame({"c": ["a", "b"] * 50, "x": np.arange(100.0)})
    new = pd.DataFrame({"c": ["z", None, "a"], "x": [1.0, 2.0, 3.0]})
    grouped = TableEncoder().fit(plain)
    assert grouped.get_feature_names_out()[-1] == "categorical__c_infrequent_sklearn"
    assert (grouped.transform(plain)[:, -1] == 0).all()
    with pytest.warns(UserWarning, match=r"Column 'c': 2 row.*'missing', 'z'.*infrequent"):
        assert grouped.transform(new)[:, 1:].tolist() == [[0, 0, 1], [0, 0, 1], [1, 0, 0]]
    ungrouped = TableEncoder(min_frequency=None).fit(plain)
    assert ungrouped.get_feature_names_out()[-1] == f"categorical__c_{UNSEEN}"
    with pytest.warns(UserWarning, match=r"Column 'c'.*'<unseen category>', a column that is 0"):
        assert ungrouped.transform(new)[:, 1:].tolist() == [[0, 0, 1], [0, 0, 1], [1, 0, 0]]


def test_categories_compare_as_text():
    """An int category read back as a float (a CSV with a gap) is the same category."""
    encoder = TableEncoder().fit(pd.DataFrame({"zip": pd.Categorical([75001, 69002] * 20),
                                               "x": np.arange(40.0)}))
    as_floats = pd.DataFrame({"zip": pd.Categorical([75001.0, np.nan]), "x": [1.0, 2.0]})
    with pytest.warns(UserWarning, match="missing"):
        encoded = encoder.transform(as_floats)
    # 69002 and 75001 (sorted text), then the infrequent column the gap falls in
    assert encoded[:, 1:].tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_all_missing_column_is_left_out_with_a_warning(fitted):
    table, _ = fitted
    with pytest.warns(UserWarning, match=r"\['notes'\] are missing in every training row"):
        encoder = TableEncoder().fit(table.assign(notes=None))
    assert encoder.column_kinds_["notes"] == "empty"
    assert not any("notes" in name for name in encoder.get_feature_names_out())
    filled = table.assign(notes="now filled")
    np.testing.assert_array_equal(encoder.transform(filled),
                                  encoder.transform(table.assign(notes=None)))
    with pytest.raises(ValueError, match="Every column of X is missing"):
        TableEncoder().fit(pd.DataFrame({"a": [None, None], "b": [np.nan, np.nan]}))


def test_a_column_all_missing_at_scoring_time_is_imputed(fitted):
    table, encoder = fitted
    gaps = table.head(4).copy()
    gaps["size"] = None          # object dtype, every value missing
    gaps["color"] = np.nan       # float dtype, every value missing
    encoded = encoder.transform(gaps)     # a missing color was seen in fit: no warning
    names = list(encoder.get_feature_names_out())
    assert (encoded[:, names.index("numeric__missingindicator_size")] == 1).all()
    assert np.isfinite(encoded).all()


def test_a_column_whose_type_changes_is_refused_by_name(fitted):
    table, encoder = fitted
    text = table.head(3).copy()
    text["size"] = text["size"].astype(object)
    text.loc[1, "size"] = "n/a"
    with pytest.raises(ValueError, match=r"Column 'size' was numeric in fit.*'n/a'.*to_numeric"):
        encoder.transform(text)
    numbers = table.head(3).copy()
    numbers["color"] = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match=r"Column 'color' was categorical in fit but is numeric"):
        encoder.transform(numbers)
    swapped = table.head(3).copy()
    swapped["flag"] = [0.0, 1.0, 1.0]                  # booleans and numbers stand for each other
    swapped["count"] = [True, False, True]
    assert np.isfinite(encoder.transform(swapped)).all()


def test_unsupported_and_bad_values_are_refused_by_name():
    dates = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=4), "x": np.arange(4.0)})
    with pytest.raises(ValueError, match=r"Column 'when' holds datetime64.*dayofweek"):
        TableEncoder().fit(dates)
    with pytest.raises(ValueError, match=r"Column 'x' holds 1 infinite value\(s\)"):
        TableEncoder().fit(pd.DataFrame({"x": [1.0, np.inf, 2.0]}))
    with pytest.raises(ValueError, match="string column names"):
        TableEncoder().fit(pd.DataFrame(np.ones((3, 2))))
    assert column_kind(pd.Series([True, None, False]), "b") == "boolean"
    assert column_kind(pd.Series([1, "a"]), "m") == "categorical"


def test_an_identifier_column_warns():
    table = pd.DataFrame({"id": [f"order-{i}" for i in range(50)], "x": np.arange(50.0)})
    with pytest.warns(UserWarning, match=r"\['id'\] hold a different text in most rows"):
        encoder = TableEncoder().fit(table)
    assert encoder.transform(table).shape == (50, 21)   # x and max_categories=20 columns


def test_arrays_are_numeric_columns():
    X = np.random.RandomState(0).normal(size=(50, 3))
    X[0, 1] = np.nan
    encoder = TableEncoder().fit(X)
    assert list(encoder.column_kinds_) == ["x0", "x1", "x2"]
    assert not hasattr(encoder, "feature_names_in_")
    assert encoder.transform(X).shape == (50, 4)   # three columns and x1's indicator
    with pytest.raises(ValueError, match="X has 2 features, but TableEncoder is expecting 3"):
        encoder.transform(X[:, :2])


@parametrize_with_checks([TableEncoder()])
def test_sklearn_compatible_encoder(estimator, check):
    check(estimator)


def test_pipeline_screens_a_mixed_table():
    table = mixed_table(n=400)
    pipe = make_pipeline(AEDetector(max_iter=30, random_state=0)).fit(table)
    assert [name for name, _ in pipe.steps] == ["preprocess", "detector"]
    scores = pipe.score_samples(table)
    assert scores.shape == (400,) and np.isfinite(scores).all()
    assert set(np.unique(pipe.predict(table))) <= {-1, 1}
    odd = table.head(20).copy()
    odd["size"] = odd["size"] + 40.0       # 20 standard deviations away
    assert (pipe.score_samples(odd) < np.quantile(scores, 0.05)).all()
    refit = clone(pipe).fit(table)
    np.testing.assert_array_equal(refit.score_samples(table), scores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # clean rows raise no warning
        pipe.predict(table.head(5))


def test_make_pipeline_refuses_other_estimators():
    from sklearn.ensemble import IsolationForest

    with pytest.raises(TypeError, match="must be an aedetect detector"):
        make_pipeline(IsolationForest())


@settings(max_examples=15)
@given(data=st.data())
def test_any_mixed_table_encodes_each_row_alone_as_in_a_batch(data):
    """Random tables of every column kind with random gaps: the encoding is finite,
    dense, and each row's does not depend on the rows beside it."""
    n = data.draw(st.integers(4, 30))
    kinds = data.draw(st.lists(st.sampled_from(["float", "Int64", "boolean", "text",
                                                "category"]), min_size=1, max_size=5))
    rng = np.random.RandomState(data.draw(st.integers(0, 2**16)))
    columns = {}
    for i, kind in enumerate(kinds):
        if kind == "float":
            values = pd.Series(rng.normal(size=n))
        elif kind == "Int64":
            values = pd.Series(pd.array(rng.randint(-3, 3, n), dtype="Int64"))
        elif kind == "boolean":
            values = pd.Series(pd.array(rng.rand(n) > 0.5, dtype="boolean"))
        else:
            values = pd.Series(rng.choice(["a", "b", "c", "d"], n), dtype=object)
            if kind == "category":
                values = values.astype("category")
        values[rng.rand(n) < 0.2] = None
        columns[f"c{i}"] = values
    table = pd.DataFrame(columns)
    assume(not table.isna().all().all())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        encoder = TableEncoder(min_frequency=2).fit(table)
        batch = encoder.transform(table)
        alone = np.vstack([encoder.transform(table.iloc[[i]]) for i in range(n)])
    assert batch.dtype == np.float64 and np.isfinite(batch).all() and batch.shape[0] == n
    np.testing.assert_array_equal(alone, batch)
