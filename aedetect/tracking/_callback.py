"""Tracked training: :class:`MLflowCallback`, one detector fit into one MLflow run."""

import time
import warnings

from .._fitting import user_stacklevel
from .._training import Callback
from . import _background, _logging
from ._runs import open_run, store_client
from ._store import TrackingWarning, _failure_message, _http_limits, _short, not_logged


#: The callback's clock (the flush schedule, ``training_time_s``).
_clock = time.perf_counter


class _FitLog:
    """What one fit has logged so far, what waits to be logged, what could not be."""

    def __init__(self, X):
        self.X = X
        self.start = self.flushed = _clock()
        self.client = self.run_id = self.error = None
        self.owns_run = False
        self.skipped = []
        self.pending = []  # metrics of the epochs not logged yet
        self.pending_epochs = []
        self.params, self.tags = [], []  # sent with the first write

    def skip(self, *items):
        for what in items:
            if not self.skipped or self.skipped[-1] != what:
                self.skipped.append(what)


class _FinishJob:
    """The last step of a fit, off its thread: log the last batch of metrics and params
    (when given), the plots, then end the run if the callback opened it (even when the
    plots failed). Holds copies, never the detector
    or its data. Returns ``None``, or the text of the warning saying what failed."""

    def __init__(self, client, run_id, owns_run, plots, limits, final=None, items=()):
        self.client, self.run_id, self.owns_run = client, run_id, owns_run
        self.plots, self.limits, self.final, self.items = plots, limits, final, list(items)

    def __call__(self):
        failed, first = [], None
        with _http_limits(*self.limits):
            if self.final is not None:
                try:
                    self.client.log_batch(self.run_id, *self.final)
                except Exception as exc:  # noqa: BLE001 - reported as a TrackingWarning
                    failed, first = [*self.items, "the final params"], exc
            try:
                _logging.log_figures(self.client, self.run_id, self.plots)
            except Exception as exc:  # noqa: BLE001 - reported as a TrackingWarning
                failed.append("the plots")
                first = first or exc
            if self.owns_run:
                try:
                    self.client.set_terminated(self.run_id, status="FINISHED")
                except Exception as exc:  # noqa: BLE001
                    failed.append(f"the end of run {self.run_id} (it stays RUNNING)")
                    first = first or exc
        if not failed:
            return None
        return (f"MLflow logging of {self.plots.name}.fit to {self.client.tracking_uri} "
                f"(run {self.run_id}) failed after the fit, on the background worker: "
                f"{_short(first)}. Not logged: {'; '.join(not_logged(failed))}. The fit itself "
                "completed normally and the detector is unaffected.")


class MLflowCallback(Callback):
    """Log a detector's fit to MLflow; pass it in the detector's ``callbacks``.

    A fit logs: every parameter (``get_params``), the dataset shape (``n_samples``,
    ``n_features``) and the resolved structure (``latent_dim_``,
    ``hidden_layer_sizes_``) as params; the training data as the run input ``train``
    (with its column names when fitted on a DataFrame); per epoch, every loss component
    of ``history_``, ``val_loss`` with early stopping and ``epoch_time`` as metrics with
    ``step=epoch``; at the end, the fitted values ``offset_``, ``n_iter_``,
    ``best_epoch_``, ``best_loss_`` and ``training_time_s`` as params (single values
    are not charts), the plots ``plots/loss_curves.png`` and
    ``plots/score_histogram.png``, and with ``log_models=True`` the model itself.

    The plots are drawn after the fit, on a worker thread, and the run is ended after
    them (``asynchronous=True``): ``fit`` returns without waiting for matplotlib
    (about 0.1 s) or for the last write (the epochs not written yet and the fitted
    values, which the worker logs before the plots). Call
    :func:`aedetect.tracking.flush` before reading the run; the interpreter waits for
    the worker at exit. The run, its params and dataset, and with ``log_models=True``
    the model and the last write, are logged before ``fit`` returns; the worker holds
    copies, so a later refit of the detector cannot change what it logs.

    The params and epoch metrics are sent in batches: at the end of the fit, and every
    ``flush_interval`` seconds during it (so a long fit shows them while it trains). A
    short fit thus costs one write for all its epochs (each write to a SQLite store is
    a commit).

    Where: into ``run_id`` if given, else into the active run
    (``mlflow.start_run()``), else into a new run in ``experiment_id`` that is ended
    as FINISHED, or FAILED (KILLED on ``KeyboardInterrupt``) when the fit fails. A
    nested child run is opened instead when that run already holds an aedetect fit
    (refits, as in a grid search, never overwrite each other), was opened by an
    MLflow autologging integration (``mlflow.sklearn.autolog``), or holds a param of
    the same name with another value. New runs carry MLflow's context tags
    (``mlflow.user``, ``mlflow.source.name``, ``mlflow.source.type``) as
    ``mlflow.start_run`` would set them.

    Logging never breaks training: when a call fails (server down, disk full) the
    fit goes on without further logging and ends with one :class:`TrackingWarning`
    saying what was not logged (for the plots drawn after the fit, the warning comes
    from :func:`aedetect.tracking.flush`, or at exit, and the run is ended all the
    same). HTTP calls are bounded by ``max_retries`` and ``timeout`` unless
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT`` are set.

    Parameters
    ----------
    client : mlflow.MlflowClient, default=None
        Client to log with. ``None``: a client of :func:`get_tracking_uri` (MLflow's
        own tracking URI).
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
        training data and about 0.1 s of drawing).
    log_models : bool, default=False
        Also log the fitted detector as the MLflow model ``model`` of the run
        (:func:`aedetect.tracking.log_model`). :func:`autolog` sets it to True.
    flush_interval : float, default=10.0
        Seconds between two writes of the epoch metrics during a fit; ``0`` writes
        each epoch as it ends.
    asynchronous : bool, default=True
        Draw and log the plots, and end the run, on a worker thread after ``fit``
        returns (:func:`aedetect.tracking.flush` waits for it). ``False`` does it all
        inside ``fit``: the run is complete (and ended) when ``fit`` returns, and a
        :class:`TrackingWarning` turned into an error fails the fit and the run.
        Without plots, or when the fit fails, everything happens inside ``fit``
        either way.
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
    experiment_id_ : str
        Its experiment (:func:`experiment_url` gives its address in MLflow's UI).
    model_info_ : mlflow.models.model.ModelInfo or None
        The model logged by the last fit (``log_models=True``), else ``None``.

    Examples
    --------
    >>> from aedetect import AEDetector
    >>> from aedetect.tracking import MLflowCallback
    >>> detector = AEDetector(callbacks=[MLflowCallback(run_name="digits")])  # doctest: +SKIP
    """

    _OPTIONS = ("client", "experiment_id", "experiment_name", "run_id", "run_name", "tags",
                "log_plots", "log_models", "flush_interval", "max_retries", "timeout",
                "asynchronous")

    def __init__(self, *, client=None, experiment_id=None, experiment_name=None, run_id=None,
                 run_name=None, tags=None, log_plots=True, log_models=False,
                 flush_interval=10.0, max_retries=2, timeout=10, asynchronous=True):
        self.client = client
        self.experiment_id = experiment_id
        self.experiment_name = experiment_name
        self.run_id = run_id
        self.run_name = run_name
        self.tags = tags
        self.log_plots = log_plots
        self.log_models = log_models
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.timeout = timeout
        self.asynchronous = asynchronous
        self._fit = None

    def __deepcopy__(self, memo):
        """Copies (``sklearn.base.clone``) share the client and start with no run."""
        options = {name: getattr(self, name) for name in self._OPTIONS}
        options["tags"] = dict(self.tags) if self.tags else None
        return MLflowCallback(**options)

    def __getstate__(self):
        return {**self.__dict__, "_fit": None}

    def __setstate__(self, state):
        self.__dict__.update({"asynchronous": True, **state})  # pickled before the option

    def __repr__(self):
        return f"MLflowCallback(experiment_id={self.experiment_id!r}, run_id={self.run_id!r})"

    # ------------------------------------------------------------ safe calls
    def _attempt(self, what, function, *args):
        """Run ``function(*args)``; on the first failure stop logging for this fit.

        ``what`` names what the call logs (a string or a list of strings), for the
        warning."""
        log = self._fit
        items = [what] if isinstance(what, str) else list(what)
        if log is None or log.error is not None:
            if log is not None:
                log.skip(*items)
            return None
        try:
            with _http_limits(self.max_retries, self.timeout):
                return function(*args)
        except Exception as exc:  # noqa: BLE001 - logging must never break a fit
            log.error = exc
            log.skip(*items)
            return None

    def _take_pending(self):
        """The pending metrics, params and tags, and what they are (for the warning)."""
        log = self._fit
        metrics, params, tags = log.pending, log.params, log.tags
        items = ["the parameters"] if params else []
        items += [f"epoch {epoch}" for epoch in log.pending_epochs]
        log.pending, log.pending_epochs, log.params, log.tags = [], [], [], []
        return (metrics, params, tags), items

    # ------------------------------------------------------------- callbacks
    def on_fit_begin(self, detector, X):
        """Open (or join) the run and log the parameters and the dataset."""
        self._fit = _FitLog(X)
        self.run_id_ = self.model_info_ = self.experiment_id_ = None
        params = _logging.start_params(detector, X)
        self._attempt("the run (nothing of this fit was logged)", self._open_run, detector,
                      params)
        self._attempt("the training data", _logging.log_training_data, self._fit.client,
                      self._fit.run_id, detector, X)
        self._fit.params, self._fit.tags = _logging.start_entities(detector, params)
        self._fit.start = self._fit.flushed = _clock()  # excludes the store

    def on_epoch_end(self, trainer, record):
        """Keep the epoch's metrics (``step=epoch``); write them every ``flush_interval``
        seconds."""
        log = self._fit
        if log is None:
            return
        if log.error is not None:
            log.skip(f"epoch {record['epoch']}")
            return
        log.pending.extend(_logging.epoch_metrics(record))
        log.pending_epochs.append(int(record["epoch"]))
        if _clock() - log.flushed >= self.flush_interval:
            pending, items = self._take_pending()
            self._attempt(items, self._flush, *pending)
            log.flushed = _clock()

    def on_fit_end(self, detector, error):
        """Log what is pending, the fitted values, plots and model; end the run if it is
        ours (after the plots, on the worker, with ``asynchronous``); warn once on
        failures."""
        log = self._fit
        if log is None:
            return
        seconds = _clock() - log.start
        (metrics, params, tags), items = self._take_pending()
        plots = final = None
        if error is None:
            # with the plots on the worker, the last batch (metrics, fitted values) goes
            # there too, before them; a model logged in the fit keeps it in the fit
            if self.log_plots and self.asynchronous and not self.log_models:
                final = _logging.end_entities(detector, metrics, seconds, params, tags)
            else:
                self._attempt([*items, "the final params"], _logging.log_end, log.client,
                              log.run_id, detector, metrics, seconds, params, tags)
            if self.log_plots and self.asynchronous:
                plots = self._attempt("the plots", _logging.plot_inputs, detector, log.X)
            elif self.log_plots:
                self._attempt("the plots", _logging.log_plots, log.client, log.run_id,
                              detector, log.X)
            if self.log_models:
                self.model_info_ = self._attempt("the model", _logging.log_detector_model,
                                                 log.client, log.run_id, detector)
            if plots is not None and log.error is None:
                self._fit = None
                self._finish_later(log, plots, final, items)
                return
            if final is not None:
                log.skip(*items, "the final params")
            if plots is not None:
                log.skip("the plots")
        elif items:
            self._attempt(items, self._flush, metrics, params, tags)
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

    def _finish_later(self, log, plots, final=None, items=()):
        """Hand the last batch (``final``, if any; ``items`` says what it holds), the
        plots and the end of our run to the worker (or, when the interpreter is
        shutting down, do them now)."""
        job = _FinishJob(log.client, log.run_id, log.owns_run, plots,
                         (self.max_retries, self.timeout), final, items)
        if _background.submit(job):
            return
        message = job()
        if message:
            warnings.warn(message, TrackingWarning, stacklevel=user_stacklevel())

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
    def _open_run(self, detector, params):
        log = self._fit
        log.client = store_client(self.client)
        self.tracking_uri_ = log.client.tracking_uri
        log.run_id, self.experiment_id_, log.owns_run = open_run(
            log.client, detector, params, run_id=self.run_id, experiment_id=self.experiment_id,
            experiment_name=self.experiment_name, run_name=self.run_name, tags=self.tags)
        self.run_id_ = log.run_id

    def _flush(self, metrics, params, tags):
        self._fit.client.log_batch(self._fit.run_id, metrics=metrics, params=params, tags=tags)

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
