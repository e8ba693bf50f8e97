"""Scoring with Spark: ``mlflow.pyfunc.spark_udf`` on a saved detector (slow; needs the
``spark`` extra, ``pip install -e ".[spark]"``, and Java 17)."""

import os
import sys

import numpy as np
import pandas as pd
import pytest

from aedetect import AEDetector, tracking
from tracking_support import SMALL, clean_mlflow_state  # noqa: F401 - fixtures by name

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("pyspark")

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*An input example was not provided")]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    # The workers must run this Python (the one with aedetect), not python3 from PATH:
    # Spark reads PYSPARK_PYTHON when its JVM starts, so it is set before the session.
    previous = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (SparkSession.builder.master("local[2]").appName("aedetect-tests")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.enabled", "false").getOrCreate())
    yield session
    session.stop()
    if previous is None:
        os.environ.pop("PYSPARK_PYTHON", None)
    else:
        os.environ["PYSPARK_PYTHON"] = previous


@pytest.mark.parametrize("named", [False, True], ids=["array-fit", "frame-fit"])
def test_spark_udf_scores_100k_rows_exactly_as_score_samples(spark, tmp_path, named):
    from pyspark.sql import functions as F

    rng = np.random.RandomState(0)
    columns = [f"x{i}" for i in range(5)]
    X = pd.DataFrame(rng.normal(size=(100_000, 5)), columns=columns)
    train = X.iloc[:2000] if named else X.iloc[:2000].to_numpy()
    detector = AEDetector(**SMALL).fit(train)
    tracking.save_model(detector, tmp_path / "model")
    frame = spark.createDataFrame(X.assign(row=np.arange(len(X))))
    # separate columns, as for any MLflow model with a column signature
    score = mlflow.pyfunc.spark_udf(spark, str(tmp_path / "model"), result_type="double",
                                    env_manager="local", params={"output": "score"})
    everything = mlflow.pyfunc.spark_udf(
        spark, str(tmp_path / "model"), env_manager="local",
        result_type="score double, decision double, label long")
    out = (frame.select("row", score(*columns).alias("score"),
                        everything(*columns).alias("all"))
           .select("row", "score", F.col("all.label").alias("label"))
           .orderBy("row").toPandas())
    rows = X if named else X.to_numpy()
    np.testing.assert_array_equal(out["score"], detector.score_samples(rows))
    np.testing.assert_array_equal(out["label"], detector.predict(rows))


def test_tracking_spark_udf_takes_an_array_column_or_the_columns(spark, tmp_path):
    from pyspark.sql import functions as F

    rng = np.random.RandomState(1)
    columns = [f"x{i}" for i in range(4)]
    X = pd.DataFrame(rng.normal(size=(5_000, 4)), columns=columns)
    detector = AEDetector(**SMALL).fit(X.to_numpy()[:1000])
    tracking.save_model(detector, tmp_path / "model")
    frame = spark.createDataFrame(X.assign(row=np.arange(len(X))))
    score = tracking.spark_udf(spark, str(tmp_path / "model"), result_type="double",
                               env_manager="local", params={"output": "score"})
    out = (frame.select("row", score(F.array(*columns)).alias("from_array"),
                        score(*columns).alias("from_columns"))
           .orderBy("row").toPandas())
    expected = detector.score_samples(X.to_numpy())
    np.testing.assert_array_equal(out["from_array"], expected)
    np.testing.assert_array_equal(out["from_columns"], expected)
    arrays = frame.select(F.array(*columns).alias("features"))
    by_name = arrays.select(score("features").alias("s")).toPandas()["s"]
    np.testing.assert_array_equal(np.sort(by_name), np.sort(expected))
    short = frame.select(score(F.array(*columns[:3])).alias("s"))
    with pytest.raises(Exception, match="4 features in order"):
        short.collect()
