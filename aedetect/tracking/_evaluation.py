"""``mlflow.models.evaluate(..., evaluators="aedetect")``: outlier detection evaluated as a
binary classifier, with the curves that need probabilities.

MLflow's own classifier evaluator asks only scikit-learn models for probabilities
(``predict_proba``); for any other pyfunc it skips ROC and precision-recall. This
evaluator is that same classifier evaluator, except that it asks an aedetect model for
its ``"classifier"`` output: the label ``outlier`` (1 = outlier, 0 = inlier) and
``outlier_probability`` (higher = more outlying). The labels of the evaluation data
must use the same convention: 1 (or True) for outliers. It is registered with MLflow
through the ``mlflow.model_evaluator`` entry point of the aedetect package, and it
leaves models that are not aedetect's to MLflow's evaluators.
"""

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models.evaluation.base import _ModelType
from mlflow.models.evaluation.evaluators.classifier import ClassifierEvaluator

from ._flavor import FLAVOR_NAME


class OutlierEvaluator(ClassifierEvaluator):
    """MLflow's classifier evaluator fed with an aedetect model's outlier probability.

    Metrics and artifacts are MLflow's (accuracy, precision, recall, F1, ``roc_auc``,
    ``precision_recall_auc``, the confusion matrix, ROC, precision-recall, lift and
    calibration curves), with class 1 = outlier. Use it with
    ``mlflow.models.evaluate(model, data, targets=..., model_type="classifier",
    evaluators="aedetect")``.
    """

    name = "aedetect"

    @classmethod
    def can_evaluate(cls, *, model_type, evaluator_config, **kwargs):
        return model_type == _ModelType.CLASSIFIER

    def evaluate(self, *, model=None, **kwargs):
        """Evaluate an aedetect model; leave any other model to MLflow's evaluators
        (returns ``None``, as MLflow expects of an evaluator that does not apply)."""
        flavors = getattr(getattr(model, "metadata", None), "flavors", None) or {}
        if model is not None and FLAVOR_NAME not in flavors:
            return None
        return super().evaluate(model=model, **kwargs)

    def _generate_model_predictions(self, model, input_df):
        if model is None:
            raise MlflowException.invalid_parameter_value(
                "The 'aedetect' evaluator needs an aedetect model (a model URI or a loaded "
                "pyfunc), not static predictions; use evaluators='default' for those.")
        out = model.predict(input_df, params={"output": "classifier"})
        missing = {"outlier", "outlier_probability"} - set(getattr(out, "columns", ()))
        if missing:
            raise MlflowException.invalid_parameter_value(
                f"The model's 'classifier' output lacks {sorted(missing)}: the 'aedetect' "
                "evaluator evaluates models saved by aedetect.tracking.save_model or "
                "log_model (save older models again).")
        probability = out["outlier_probability"].to_numpy(dtype=np.float64)
        return out["outlier"].to_numpy(), np.column_stack([1.0 - probability, probability])
