"""The MLflow pyfunc of an aedetect model (models-from-code: MLflow runs this file).

``aedetect.tracking.save_model`` copies this file into the model directory; MLflow
executes it at load time instead of unpickling a Python object. The detector itself is
loaded from the model's ``detector`` artifact (JSON config + safetensors weights).
"""

import pandas as pd
from scipy.special import expit
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

#: Values of ``output`` (``model_config`` at load time, ``params`` per call): every
#: column, one of them, or the outlier-detection-as-classification view (1 = outlier).
OUTPUTS = ("all", "score", "decision", "label", "outlier", "outlier_probability",
           "classifier")
_COLUMNS = {"all": ("score", "decision", "label"),
            "classifier": ("outlier", "outlier_probability")}


def _check_output(output, where):
    if output not in OUTPUTS:
        raise MlflowException(f"{where} 'output' must be one of {', '.join(OUTPUTS)}; got "
                              f"{output!r}.", error_code=INVALID_PARAMETER_VALUE)
    return output


class DetectorModel(PythonModel):
    """Scores rows with a saved detector; returns a DataFrame.

    Columns: ``score`` (``score_samples``, higher = more normal), ``decision``
    (``score - offset_``, negative = outlier), ``label`` (+1 inlier, -1 outlier),
    ``outlier`` (1 outlier, 0 inlier: the labels of ``mlflow.models.evaluate``'s
    classifier) and ``outlier_probability`` (``1 / (1 + exp(decision))``: 0.5 at the
    threshold, higher = more outlying; a monotone map of ``-score``, not a calibrated
    probability). ``output="all"`` (the default) returns score, decision and label,
    ``"classifier"`` outlier and outlier_probability, any other column name that
    column alone (``"outlier"`` as a Series: one label per row, the shape of
    ``mlflow.models.evaluate(model_type="classifier")``'s predictions). Choose it at
    load time (``model_config={"output": ...}``) or per call (``params={"output":
    ...}``, which wins).
    """

    def load_context(self, context):
        from aedetect._persistence import load_detector

        config = getattr(context, "model_config", None) or {}
        self.output = _check_output(config.get("output", "all"), "model_config")
        self.detector = load_detector(context.artifacts["detector"])

    # The hint only silences MLflow's advice to add one; model_input may also be an
    # ndarray (MLflow converts JSON "inputs" of unnamed columns to one).
    def predict(self, context, model_input: pd.DataFrame, params=None):
        output = (params or {}).get("output") or "default"
        output = self.output if output == "default" else _check_output(output, "params")
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        if index is not None and getattr(self.detector, "feature_names_in_", None) is None:
            model_input = model_input.to_numpy()  # fitted by position: a CSV header is no name
        try:
            scores = self.detector.score_samples(model_input)
        except ValueError as exc:  # bad input (NaN, wrong width): the caller's error
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc
        # a saved Pipeline (preprocessing + detector) thresholds with its last step
        detector = self.detector[-1] if hasattr(self.detector, "steps") else self.detector
        decision = scores - detector.offset_
        inlier = decision >= 0
        columns = {"score": scores, "decision": decision,
                   "label": inlier.astype("int64") * 2 - 1,
                   "outlier": (~inlier).astype("int64"),
                   "outlier_probability": expit(-decision)}
        if output == "outlier":  # 1-D, as MLflow's classifier evaluator expects labels
            return pd.Series(columns["outlier"], index=index, name="outlier")
        names = _COLUMNS.get(output, (output,))
        return pd.DataFrame({name: columns[name] for name in names}, index=index)


set_model(DetectorModel())
