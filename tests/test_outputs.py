"""Outputs keep the rows' identity: ``set_output`` for ``transform`` (scikit-learn's
protocol), the same for ``reconstruct`` and ``error_map``, and arrays otherwise."""

import numpy as np
import pandas as pd
import pytest
import sklearn

from aedetect import AEDetector, VAEDetector


@pytest.fixture(scope="module")
def frame():
    rng = np.random.RandomState(0)
    return pd.DataFrame(rng.normal(size=(120, 4)), columns=["temp", "load", "rpm", "flow"],
                        index=pd.Index([f"unit-{i}" for i in range(120)], name="unit"))


@pytest.mark.parametrize("cls", [AEDetector, VAEDetector])
def test_set_output_pandas_keeps_index_and_names_codes(cls, frame):
    detector = cls(max_iter=3, latent_dim=2, random_state=0).set_output(transform="pandas")
    detector.fit(frame)
    shuffled = frame.sample(frac=1.0, random_state=1)
    codes = detector.transform(shuffled)
    assert isinstance(codes, pd.DataFrame)
    assert codes.index.equals(shuffled.index)
    assert list(codes.columns) == list(detector.get_feature_names_out())
    assert list(codes.columns) == [f"{cls.__name__.lower()}{i}" for i in range(2)]
    # the same numbers as the array output, row for row
    plain = cls(max_iter=3, latent_dim=2, random_state=0).fit(frame).transform(shuffled)
    np.testing.assert_array_equal(codes.to_numpy(), plain)


def test_reconstruct_and_error_map_follow_set_output(frame):
    detector = AEDetector(max_iter=3, random_state=0).fit(frame)
    part = frame.iloc[[5, 0, 17]]
    arrays = detector.reconstruct(part), detector.error_map(part)
    assert all(isinstance(a, np.ndarray) for a in arrays)
    detector.set_output(transform="pandas")
    for array, framed in zip(arrays, (detector.reconstruct(part), detector.error_map(part))):
        assert isinstance(framed, pd.DataFrame)
        assert framed.index.equals(part.index) and framed.columns.equals(part.columns)
        np.testing.assert_array_equal(framed.to_numpy(), array)
    # numpy input stays numpy whatever the configuration
    with pytest.warns(UserWarning, match="feature names"):
        assert isinstance(detector.reconstruct(part.to_numpy()), np.ndarray)


def test_global_transform_output_config(frame):
    detector = AEDetector(max_iter=3, random_state=0).fit(frame)
    with sklearn.config_context(transform_output="pandas"):
        assert detector.transform(frame).index.equals(frame.index)
        assert detector.reconstruct(frame).index.equals(frame.index)
    assert isinstance(detector.reconstruct(frame), np.ndarray)


def test_scores_align_with_rows_by_position(frame):
    detector = AEDetector(max_iter=3, random_state=0).fit(frame)
    scores = pd.Series(detector.score_samples(frame), index=frame.index)
    reordered = frame.loc[scores.index[::-1]]
    pd.testing.assert_series_equal(
        pd.Series(detector.score_samples(reordered), index=reordered.index),
        scores.loc[reordered.index])
