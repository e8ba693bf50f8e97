"""A hyper-parameter search under :func:`autolog`: one parent run, one child per candidate.

Like ``mlflow.sklearn.autolog``, the runs are built from the fitted search rather
than from the cross-validation fits: the parent gets the search's settings, the best
parameters and score, ``cv_results_`` as a CSV artifact, and the training of the
refitted best detector (its per-epoch metrics from ``history_``, fitted values,
plots, model); each candidate (a row of ``cv_results_``) gets a child run with its
full parameters and its scores as metrics. Faults are handled like a fit's: one
:class:`TrackingWarning` naming what was not logged; the search itself is unaffected.
"""

import time
import warnings

import numpy as np

from .._fitting import user_stacklevel
from . import _logging
from ._logging import DETECTOR_TAG
from ._runs import open_run, store_client
from ._store import TrackingWarning, _http_limits

#: Tag of the runs that hold a search (parent) or one of its candidates (child).
SEARCH_TAG = "aedetect.search"


def _plain(value):
    return value is None or isinstance(value, (str, bool, int, float, tuple, list, dict))


def _detector_of(estimator):
    """The detector inside ``estimator`` (itself, or the last step of a pipeline), and the
    pipeline steps before it (``None`` for a bare detector)."""
    from .._base import BaseAutoencoderDetector

    if isinstance(estimator, BaseAutoencoderDetector):
        return estimator, None
    steps = getattr(estimator, "steps", None)
    if steps and isinstance(steps[-1][1], BaseAutoencoderDetector):
        return steps[-1][1], estimator[:-1]
    return None, None


def _search_params(search):
    """The search's own parameters (``cv``, ``scoring``, ``estimator__...``) that are
    plain data."""
    return {name: value for name, value in search.get_params(deep=True).items()
            if _plain(value) and not name.endswith("callbacks")}


class SearchLog:
    """Opens the parent run when the search starts; logs the rest when it ends."""

    def __init__(self, search, X, options):
        self.search, self.X, self.options = search, X, options
        self.started = int(time.time() * 1000)
        self.client = self.run_id = self.error = None
        self.owns_run = False
        self.skipped = []
        self.logged = {}  # the parent's params (the search's own)
        self._attempt("the search run (nothing of this search was logged)", self._open)

    # ------------------------------------------------------------ faults
    def _attempt(self, what, function, *args):
        if self.error is not None:
            self.skipped.append(what)
            return None
        try:
            with _http_limits(self.options.get("max_retries", 2),
                              self.options.get("timeout", 10)):
                return function(*args)
        except Exception as exc:  # noqa: BLE001 - logging must never break a search
            self.error = exc
            self.skipped.append(what)
            return None

    def _warn(self, error=None):
        if self.error is None:
            return
        outcome = ("The search itself completed normally." if error is None
                   else "The search's own error is raised as usual.")
        run = f" (run {self.run_id})" if self.run_id else ""
        warnings.warn(f"MLflow logging of {type(self.search).__name__}.fit{run} failed and was "
                      f"stopped: {type(self.error).__name__}: {self.error}. Not logged: "
                      f"{'; '.join(self.skipped)}. {outcome}", TrackingWarning,
                      stacklevel=user_stacklevel())

    # ------------------------------------------------------------ the runs
    def _open(self):
        self.client = store_client(self.options.get("client"))
        detector, _ = _detector_of(self.search.estimator)
        own = {name: str(value)[:6000] for name, value in _search_params(self.search).items()}
        self.run_id, self.experiment_id, self.owns_run = open_run(
            self.client, detector or self.search, own,
            experiment_id=self.options.get("experiment_id"),
            experiment_name=self.options.get("experiment_name"),
            run_name=self.options.get("run_name"),
            tags={**(self.options.get("tags") or {}), SEARCH_TAG: type(self.search).__name__})
        if not self.owns_run:  # the user's run holds the search
            self.client.set_tag(self.run_id, SEARCH_TAG, type(self.search).__name__)

    def failed(self, error):
        """The search raised: end our run FAILED (or KILLED) and warn on logging faults."""
        from mlflow.entities import RunTag

        if self.owns_run:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            self._attempt(f"the end of run {self.run_id} (it stays RUNNING)", lambda: (
                self.client.log_batch(self.run_id, tags=[RunTag(
                    "aedetect.error", f"{type(error).__name__}: {error}"[:5000])]),
                self.client.set_terminated(self.run_id, status=status)))
        self._warn(error)

    def finished(self):
        """Log the summary, the best detector's training and the candidates."""
        if self.run_id is None:
            self._warn()
            return
        self._attempt("the search summary", self._log_summary)
        self._attempt("the best detector's training", self._log_best)
        self._attempt("the candidate runs", self._log_candidates)
        if self.owns_run:
            self._attempt(f"the end of run {self.run_id} (it stays RUNNING)",
                          self.client.set_terminated, self.run_id, "FINISHED")
        self._warn()

    def _log_summary(self):
        import pandas as pd
        from mlflow.entities import Metric, Param

        search = self.search
        params = _search_params(search)
        params["n_candidates"] = len(search.cv_results_["params"])
        params["n_splits_"] = search.n_splits_
        for name, value in getattr(search, "best_params_", {}).items():
            params[f"best_{name}"] = value
        metrics = []
        if np.isfinite(getattr(search, "best_score_", np.nan)):
            metrics.append(Metric("best_cv_score", float(search.best_score_),
                                  int(time.time() * 1000), 0))
        self.logged = {name: str(value)[:6000] for name, value in params.items()}
        self.client.log_batch(self.run_id, metrics=metrics,
                              params=[Param(k, v) for k, v in self.logged.items()])
        table = pd.DataFrame(search.cv_results_)
        self.client.log_text(self.run_id, table.to_csv(index=False), "cv_results.csv")

    def _log_best(self):
        from .. import _data

        best = getattr(self.search, "best_estimator_", None)
        detector, before = _detector_of(best) if best is not None else (None, None)
        if detector is None or not hasattr(detector, "history_"):
            return
        X = before.transform(self.X) if before is not None else self.X
        rows = _data.validate_samples(detector, X, reset=False)[0]
        _logging.log_training_data(self.client, self.run_id, detector, rows)
        params = {name: value for name, value in _logging.start_params(detector, rows).items()
                  if name not in self.logged}  # the search's own verbose, ...
        params, tags = _logging.start_entities(detector, params)
        stamp = int(time.time() * 1000)
        metrics = [metric for record in detector.history_
                   for metric in _logging.epoch_metrics(record, stamp)]
        _logging.log_end(self.client, self.run_id, detector, metrics, params=params, tags=tags)
        if self.options.get("log_plots", True):
            _logging.log_plots(self.client, self.run_id, detector, rows)
        if self.options.get("log_models", True):
            _logging.log_detector_model(self.client, self.run_id, detector)

    def _log_candidates(self):
        from mlflow.entities import Metric, Param
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        search = self.search
        results = search.cv_results_
        detector, _ = _detector_of(search.estimator)
        deep = detector is not search.estimator
        base = {name: value for name, value in search.estimator.get_params(deep=deep).items()
                if _plain(value) and not name.endswith("callbacks")}
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        name = self.client.get_run(self.run_id).info.run_name
        stamp = int(time.time() * 1000)
        scores = [key for key, values in results.items()
                  if key != "params" and not key.startswith("param_")
                  and np.issubdtype(np.asarray(values).dtype, np.number)]
        for index, candidate in enumerate(results["params"]):
            tags = _logging.run_tags(detector or search.estimator, {
                MLFLOW_PARENT_RUN_ID: self.run_id, SEARCH_TAG: f"candidate {index}"})
            tags.pop(DETECTOR_TAG, None)  # a candidate is a summary, not a fit
            run = self.client.create_run(experiment_id, start_time=self.started, tags=tags,
                                         run_name=f"{name}-{index}")
            params = {**base, **candidate}
            metrics = [Metric(key, float(results[key][index]), stamp, 0) for key in scores
                       if np.isfinite(results[key][index])]
            self.client.log_batch(run.info.run_id, metrics=metrics,
                                  params=[Param(k, str(v)[:6000]) for k, v in params.items()])
            self.client.set_terminated(run.info.run_id, "FINISHED", end_time=stamp)
