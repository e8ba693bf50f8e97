"""The MLflow pyfunc of an aedetect model (models-from-code: MLflow runs this file).

``aedetect.tracking.save_model`` copies this file into the model directory; MLflow
executes it at load time instead of unpickling a Python object. The detector itself is
loaded from the model's ``detector`` artifact (JSON config + safetensors weights).
"""

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

#: Values of ``params={"output": ...}``: every column, or one of them.
OUTPUTS = ("all", "score", "decision", "label")


class DetectorModel(PythonModel):
    """Scores rows with a saved detector; returns a DataFrame.

    Columns: ``score`` (``score_samples``, higher = more normal), ``decision``
    (``score - offset_``, negative = outlier) and ``label`` (+1 inlier, -1 outlier).
    ``params={"output": "score"}`` (or ``"decision"``, ``"label"``) returns only that
    column; the default ``"all"`` returns the three.
    """

    def load_context(self, context):
        from aedetect._persistence import load_detector

        self.detector = load_detector(context.artifacts["detector"])

    # The hint only silences MLflow's advice to add one: under a tensor signature
    # (detectors fitted without column names) model_input is a float64 ndarray.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        output = (params or {}).get("output") or "all"
        if output not in OUTPUTS:
            raise MlflowException(f"params['output'] must be one of {', '.join(OUTPUTS)}; got "
                                  f"{output!r}.", error_code=INVALID_PARAMETER_VALUE)
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        try:
            scores = self.detector.score_samples(model_input)
        except ValueError as exc:  # bad input (NaN, wrong width): the caller's error
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc
        decision = scores - self.detector.offset_
        columns = {"score": scores, "decision": decision,
                   "label": ((decision >= 0).astype("int64") * 2 - 1)}
        if output != "all":
            columns = {output: columns[output]}
        return pd.DataFrame(columns, index=index)


set_model(DetectorModel())
