"""Spark scoring: :func:`spark_udf`, MLflow's ``spark_udf`` taking either calling style."""


def spark_udf(spark, model_uri, **options):
    """A Spark UDF that scores with a saved or logged aedetect model, called with one
    column per feature or with one array column of all of them.

    ``mlflow.pyfunc.spark_udf(spark, model_uri, **options)`` itself maps its arguments
    by position to the columns of the model's signature (one per feature), so an array
    column, say ``F.array(*columns)`` or a column of vectors turned into arrays, must
    be split first: this UDF does it (``column[0]``, ``column[1]``, ...) when it gets
    one argument and the model has several features. Everything else is MLflow's:
    ``options`` go to ``mlflow.pyfunc.spark_udf`` unchanged (``result_type``,
    ``env_manager``, ``params``, ...), and ``udf.metadata`` is the model's metadata.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    model_uri : str
        A model directory or ``runs:/`` / ``models:/`` URI.
    **options
        Keyword arguments of ``mlflow.pyfunc.spark_udf``.

    Returns
    -------
    udf : callable
        ``udf(*feature_columns)`` or ``udf(array_column)`` (a ``Column`` or a column
        name) returns the output ``Column``.
    """
    import mlflow

    udf = mlflow.pyfunc.spark_udf(spark, model_uri, **options)
    schema = udf.metadata.get_input_schema()
    n_features = len(schema.inputs) if schema is not None else None

    def score(*columns):
        if len(columns) == 1 and n_features is not None and n_features > 1:
            from pyspark.sql import functions as F

            column = F.col(columns[0]) if isinstance(columns[0], str) else columns[0]
            message = (f"aedetect spark_udf: the array column must hold the model's "
                       f"{n_features} features in order (one array per row)")
            first = F.when(F.size(column) == n_features, column.getItem(0)).otherwise(
                F.raise_error(message))  # a row of another length fails, never truncates
            columns = [first, *(column.getItem(i) for i in range(1, n_features))]
        return udf(*columns)

    score.metadata = udf.metadata
    return score
