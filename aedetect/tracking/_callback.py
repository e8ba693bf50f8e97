"""Tracked training: :class:`MLflowCallback` and the :func:`autolog` switch."""

import time
import warnings

from .. import _fitting
from .._fitting import user_stacklevel
from .._training import Callback
from ._store import (
    TrackingWarning,
    _http_limits,
    check_sqlite_store,
    get_experiment_id,
    get_tracking_uri,
)

#: Run tag naming the detector whose fit a run holds.
DETECTOR_TAG = "aedetect.detector"


class _FitLog:
    """What one fit has logged so far, and what it could not log."""

    def __init__(self, X):
        self.X = X
        self.start = time.perf_counter()
        self.client = self.run_id = self.error = None
        self.owns_run = False
        self.skipped = []

    def skip(self, what):
        if not self.skipped or self.skipped[-1] != what:
            self.skipped.append(what)


class MLflowCallback(Callback):
    """Log a detector's fit to MLflow; pass it in the detector's ``callbacks``.

    A fit logs: every parameter (``get_params``), the dataset shape (``n_samples``,
    ``n_features``) and the training data as a run input, the resolved structure
    (``latent_dim_``, ``hidden_layer_sizes_``); once per epoch, one batch of metrics
    with ``step=epoch``: every loss component of ``history_``, ``val_loss`` with
    early stopping and ``epoch_time``; at the end, the metrics ``offset``,
    ``training_time`` (seconds), ``best_epoch``, ``best_loss`` and ``n_iter``, and the
    plots ``plots/loss_curves.png`` and ``plots/score_histogram.png``.

    Where: into ``run_id`` if given, else into the active run
    (``mlflow.start_run()``), else into a new run in ``experiment_id`` that is ended
    as FINISHED, or FAILED (KILLED on ``KeyboardInterrupt``) when the fit fails. A run
    that already holds an aedetect fit gets a nested child run instead, so refits
    (as in a grid search) never overwrite each other.

    Logging never breaks training: when a call fails (server down, disk full) the
    fit goes on without further logging and ends with one :class:`TrackingWarning`
    saying what was not logged. HTTP calls are bounded by ``max_retries`` and
    ``timeout`` unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` /
    ``MLFLOW_HTTP_REQUEST_TIMEOUT`` are set.

    Parameters
    ----------
    client : mlflow.MlflowClient, default=None
        Client to log with. ``None``: a client of :func:`get_tracking_uri`.
    experiment_id : str, default=None
        Experiment of new runs. ``None``: :func:`get_experiment_id` of
        ``experiment_name``.
    experiment_name : str, default=None
        Name of the experiment used when ``experiment_id`` is ``None`` (created if
        missing). ``None``: ``"aedetect"`` (or ``MLFLOW_EXPERIMENT_NAME``).
    run_id : str, default=None
        Log into this existing run (left open).
    run_name : str, default=None
        Name of new runs; ``None`` lets MLflow pick one.
    tags : dict, default=None
        Extra tags of the run.
    log_plots : bool, default=True
        Log the loss curves and score histogram (costs one scoring pass over the
        training data).
    max_retries : int, default=2
        Retries of a failing HTTP call.
    timeout : int, default=10
        Seconds before an HTTP call times out.

    Attributes
    ----------
    run_id_ : str or None
        The run the last fit logged to (``None`` if it could not open one).
    tracking_uri_ : str
        Its tracking URI.

    Examples
    --------
    >>> from aedetect import AEDetector
    >>> from aedetect.tracking import MLflowCallback
    >>> detector = AEDetector(callbacks=[MLflowCallback(run_name="digits")])  # doctest: +SKIP
    """

    def __init__(self, *, client=None, experiment_id=None, experiment_name=None, run_id=None,
                 run_name=None, tags=None, log_plots=True, max_retries=2, timeout=10):
        self.client = client
        self.experiment_id = experiment_id
        self.experiment_name = experiment_name
        self.run_id = run_id
        self.run_name = run_name
        self.tags = tags
        self.log_plots = log_plots
        self.max_retries = max_retries
        self.timeout = timeout
        self._fit = None

    _OPTIONS = ("client", "experiment_id", "experiment_name", "run_id", "run_name", "tags",
                "log_plots", "max_retries", "timeout")

    def __deepcopy__(self, memo):
        """Copies (``sklearn.base.clone``) share the client and start with no run."""
        options = {name: getattr(self, name) for name in self._OPTIONS}
        options["tags"] = dict(self.tags) if self.tags else None
        return MLflowCallback(**options)

    def __getstate__(self):
        return {**self.__dict__, "_fit": None}

    def __repr__(self):
        return f"MLflowCallback(experiment_id={self.experiment_id!r}, run_id={self.run_id!r})"

    # ------------------------------------------------------------ safe calls
    def _attempt(self, what, function, *args):
        """Run ``function(*args)``; on the first failure stop logging for this fit."""
        log = self._fit
        if log is None or log.error is not None:
            if log is not None:
                log.skip(what)
            return None
        try:
            with _http_limits(self.max_retries, self.timeout):
                return function(*args)
        except Exception as exc:  # noqa: BLE001 - logging must never break a fit
            log.error = exc
            log.skip(what)
            return None

    # ------------------------------------------------------------- callbacks
    def on_fit_begin(self, detector, X):
        """Open (or join) the run and log the parameters and the dataset."""
        self._fit = _FitLog(X)
        self.run_id_ = None
        self._attempt("the run (nothing of this fit was logged)", self._open_run, detector)
        self._attempt("the parameters", self._log_start, detector, X)
        self._fit.start = time.perf_counter()  # training_time excludes opening the store

    def on_epoch_end(self, trainer, record):
        """Log the epoch's record as one batch of metrics at ``step=epoch``."""
        self._attempt(f"epoch {record['epoch']}", self._log_epoch, record)

    def on_fit_end(self, detector, error):
        """Log the final metrics and plots, end the run if it is ours, warn on failures."""
        log = self._fit
        if log is None:
            return
        seconds = time.perf_counter() - log.start
        if error is None:
            self._attempt("the final metrics", self._log_end, detector, seconds)
            if self.log_plots:
                self._attempt("the plots", self._log_plots, detector, log.X)
        if log.owns_run:
            self._attempt(f"the end of run {log.run_id} (it stays RUNNING)", self._end_run, error)
        self._fit = None
        if log.error is None:
            return
        try:
            warnings.warn(_failure_message(detector, log, self._uri(log), error), TrackingWarning,
                          stacklevel=user_stacklevel())
        except Exception as exc:  # the warning turned into an error: the fit fails with it
            if log.owns_run and error is None:
                self._mark_failed(log, exc)
            raise

    def _mark_failed(self, log, exc):
        """End our run FAILED after all (a fit that succeeded is failing late)."""
        try:
            with _http_limits(self.max_retries, self.timeout):
                self._fit = log
                self._end_run(exc)
        except Exception:  # noqa: BLE001 - the store already failed once; the error is raised
            pass
        finally:
            self._fit = None

    # ------------------------------------------------------------- the calls
    def _open_run(self, detector):
        import mlflow
        from mlflow import MlflowClient
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        log = self._fit
        active = mlflow.active_run()
        client = self.client
        if client is None:
            uri = mlflow.get_tracking_uri() if active else get_tracking_uri()
            check_sqlite_store(uri)  # before the client: MLflow would retry for ~100 s
            client = MlflowClient(uri)
        else:
            check_sqlite_store(client.tracking_uri)
        log.client = client
        self.tracking_uri_ = client.tracking_uri
        target = self.run_id
        if target is None and active and client.tracking_uri == mlflow.get_tracking_uri():
            target = active.info.run_id
        tags = {**(self.tags or {}), DETECTOR_TAG: type(detector).__name__,
                "estimator_name": type(detector).__name__,
                "estimator_class": f"{type(detector).__module__}.{type(detector).__qualname__}"}
        if target is not None:
            run = client.get_run(target)
            if DETECTOR_TAG not in run.data.tags:
                log.run_id = self.run_id_ = target
                return
            experiment_id = run.info.experiment_id
            tags[MLFLOW_PARENT_RUN_ID] = target
        else:
            experiment_id = self.experiment_id or get_experiment_id(client, self.experiment_name)
        run = client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        log.run_id = self.run_id_ = run.info.run_id
        log.owns_run = True

    def _log_start(self, detector, X):
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag, Param, RunTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        from .. import __version__

        params = {name: value for name, value in detector.get_params(deep=False).items()
                  if name != "callbacks"}
        params.update(n_samples=X.shape[0], n_features=X.shape[1])
        for name in ("input_shape_", "hidden_layer_sizes_", "latent_dim_"):
            if hasattr(detector, name):
                params[name] = getattr(detector, name)
        log = self._fit
        tags = [RunTag(DETECTOR_TAG, type(detector).__name__),
                RunTag("aedetect.version", __version__)]
        log.client.log_batch(log.run_id, params=[Param(k, str(v)[:6000])
                                                 for k, v in params.items()], tags=tags)
        dataset = mlflow.data.from_numpy(X, name="train")
        log.client.log_inputs(log.run_id, [DatasetInput(
            dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "train")])])

    def _log_epoch(self, record):
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        step = int(record["epoch"])
        metrics = [Metric("epoch_time" if key == "time" else key, float(value), stamp, step)
                   for key, value in record.items() if key != "epoch"]
        self._fit.client.log_batch(self._fit.run_id, metrics=metrics)

    def _log_end(self, detector, seconds):
        from mlflow.entities import Metric, RunTag

        stamp = int(time.time() * 1000)
        values = {"offset": detector.offset_, "training_time": seconds,
                  "best_epoch": detector.best_epoch_, "best_loss": detector.best_loss_,
                  "n_iter": detector.n_iter_}
        metrics = [Metric(key, float(value), stamp, 0) for key, value in values.items()]
        self._fit.client.log_batch(self._fit.run_id, metrics=metrics,
                                   tags=[RunTag("aedetect.device", str(detector.device_))])

    def _log_plots(self, detector, X):
        from ..plots import plot_loss_curves, plot_score_histogram

        name = type(detector).__name__
        figures = {
            "plots/loss_curves.png": plot_loss_curves(
                detector.history_, best_epoch=detector.best_epoch_, title=f"{name} training"),
            "plots/score_histogram.png": plot_score_histogram(
                detector._score_rows(X), detector.offset_,
                title=f"{name} scores, training data"),
        }
        for path, figure in figures.items():
            self._fit.client.log_figure(self._fit.run_id, figure, path)

    def _end_run(self, error):
        from mlflow.entities import RunTag

        log = self._fit
        if error is None:
            status = "FINISHED"
        else:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            message = f"{type(error).__name__}: {error}"[:5000]
            log.client.log_batch(log.run_id, tags=[RunTag("aedetect.error", message)])
        log.client.set_terminated(log.run_id, status=status)

    def _uri(self, log):
        return log.client.tracking_uri if log.client is not None else "MLflow"

    # ----------------------------------------------------------------- after
    def log_metrics(self, metrics, step=0):
        """Log more metrics (say, a test AUC) into the run of the last fit.

        Fault tolerant like the fit logging: a failure warns and returns.

        Parameters
        ----------
        metrics : dict of str to float
        step : int, default=0
        """
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        if getattr(self, "run_id_", None) is None:
            raise ValueError("This MLflowCallback has no run: fit a detector with it first "
                             "(a fit whose run could not be opened leaves run_id_ None).")
        client = self.client or MlflowClient(self.tracking_uri_)
        stamp = int(time.time() * 1000)
        batch = [Metric(key, float(value), stamp, step) for key, value in metrics.items()]
        try:
            with _http_limits(self.max_retries, self.timeout):
                client.log_batch(self.run_id_, metrics=batch)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"MLflow logging to {self.tracking_uri_} failed ({_short(exc)}); "
                          f"metrics {sorted(metrics)} were not logged.", TrackingWarning,
                          stacklevel=2)


def _short(exc, limit=300):
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def _failure_message(detector, log, uri, error):
    items, epochs = [], []
    for item in log.skipped:  # consecutive epochs collapse into one range
        if item.startswith("epoch "):
            if not epochs:
                items.append(None)
            epochs.append(item.split()[1])
        else:
            items.append(item)
    if epochs:
        span = f"epochs {epochs[0]}-{epochs[-1]}" if len(epochs) > 1 else f"epoch {epochs[0]}"
        items[items.index(None)] = f"the metrics of {span}"
    run = f" (run {log.run_id})" if log.run_id else ""
    outcome = ("The fit itself completed normally and the detector is unaffected."
               if error is None else "The fit's own error is raised as usual.")
    return (f"MLflow logging of {type(detector).__name__}.fit to {uri}{run} failed and was "
            f"stopped: {_short(log.error)}. Not logged: {'; '.join(items)}. {outcome}")


# ------------------------------------------------------------------ autolog
class _Autolog(Callback):
    """The global callback of :func:`autolog`: one :class:`MLflowCallback` per fit."""

    def __init__(self, options):
        self.options = options
        self._fits = {}

    def on_fit_begin(self, detector, X):
        if any(isinstance(callback, MLflowCallback) for callback in detector.callbacks or []):
            return  # the detector logs itself
        callback = self._fits[id(detector)] = MLflowCallback(**self.options)
        callback.on_fit_begin(detector, X)

    def on_epoch_end(self, trainer, record):
        callback = self._fits.get(id(trainer.estimator))
        if callback is not None:
            callback.on_epoch_end(trainer, record)

    def on_fit_end(self, detector, error):
        callback = self._fits.pop(id(detector), None)
        if callback is not None:
            callback.on_fit_end(detector, error)


def _installed_autolog():
    return next((c for c in _fitting.GLOBAL_CALLBACKS if isinstance(c, _Autolog)), None)


def _install_autolog(autolog_callback):
    _fitting.GLOBAL_CALLBACKS[:] = [c for c in _fitting.GLOBAL_CALLBACKS if not isinstance(c, _Autolog)]
    if autolog_callback is not None:
        _fitting.GLOBAL_CALLBACKS.append(autolog_callback)


class autolog:  # noqa: N801 - a function-like switch, as mlflow.sklearn.autolog
    """Log every detector fit to MLflow, as ``mlflow.sklearn.autolog`` does.

    Call it once to switch logging on for the whole process, or use it as a context
    manager to log only the fits inside the ``with`` block (the previous setting is
    restored on exit). Each fit gets its own :class:`MLflowCallback` with these
    options; a detector that has an ``MLflowCallback`` in its ``callbacks`` is left to
    it.

    Parameters
    ----------
    disable : bool, default=False
        Switch autologging off.
    **options
        Keyword arguments of :class:`MLflowCallback` (``experiment_name``,
        ``run_name``, ``tags``, ``log_plots``, ``max_retries``, ``timeout``,
        ``client``, ...).

    Examples
    --------
    >>> import aedetect.tracking
    >>> with aedetect.tracking.autolog(experiment_name="digits"):  # doctest: +SKIP
    ...     AEDetector().fit(X)
    """

    def __init__(self, disable=False, **options):
        MLflowCallback(**options)  # a wrong option fails here, not in a later fit
        self._previous = _installed_autolog()
        _install_autolog(None if disable else _Autolog(options))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        _install_autolog(self._previous)
        return False

