"""The :func:`autolog` switch: an :class:`MLflowCallback` for every fit, and one run
tree per hyper-parameter search."""

import functools
import threading

from .. import _fitting
from .._training import Callback
from ._callback import MLflowCallback

#: The scikit-learn searches whose ``fit`` autolog follows (name in
#: ``sklearn.model_selection``).
SEARCHES = ("GridSearchCV", "RandomizedSearchCV")
_SEARCH_LOCK = threading.Lock()
_searching = {"depth": 0}


class _Autolog(Callback):
    """The global callback of :func:`autolog`: one :class:`MLflowCallback` per fit."""

    def __init__(self, options):
        self.options = options
        self._fits = {}

    def on_fit_begin(self, detector, X):
        if _searching["depth"]:
            return  # a search's fits are logged from its results (see _search.py)
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
    _fitting.GLOBAL_CALLBACKS[:] = [c for c in _fitting.GLOBAL_CALLBACKS
                                    if not isinstance(c, _Autolog)]
    if autolog_callback is not None:
        _fitting.GLOBAL_CALLBACKS.append(autolog_callback)
        _patch_searches()


def _patch_searches():
    """Wrap the ``fit`` of each search class once; the wrapper does nothing more than
    the original unless autolog is on and the search's estimator holds a detector.

    The wrapper stays when autolog is switched off (it then passes straight through),
    so another library's patch of the same method (``mlflow.sklearn.autolog``) is
    never undone by ours."""
    import sklearn.model_selection

    for name in SEARCHES:
        cls = getattr(sklearn.model_selection, name)
        if not getattr(cls.fit, "_aedetect_autolog", False):
            cls.fit = _search_fit(cls.fit)


def _search_fit(fit):
    @functools.wraps(fit)
    def wrapper(search, X, y=None, **params):
        autolog_callback = _installed_autolog()
        if autolog_callback is None or _searching["depth"] or not _holds_detector(search):
            return fit(search, X, y, **params)
        from ._search import SearchLog

        log = SearchLog(search, X, autolog_callback.options)
        with _SEARCH_LOCK:
            _searching["depth"] += 1
        try:
            fit(search, X, y, **params)
        except BaseException as exc:
            log.failed(exc)
            raise
        finally:
            with _SEARCH_LOCK:
                _searching["depth"] -= 1
        log.finished()
        return search

    wrapper._aedetect_autolog = True
    return wrapper


def _holds_detector(search):
    from .._base import BaseAutoencoderDetector

    estimator = search.estimator
    return isinstance(estimator, BaseAutoencoderDetector) or any(
        isinstance(value, BaseAutoencoderDetector)
        for value in estimator.get_params(deep=True).values())


class autolog:  # noqa: N801 - a function-like switch, as mlflow.sklearn.autolog
    """Log every detector fit to MLflow, as ``mlflow.sklearn.autolog`` does.

    Call it once to switch logging on for the whole process, or use it as a context
    manager to log only the fits inside the ``with`` block (the previous setting is
    restored on exit). Each fit gets its own :class:`MLflowCallback` with these
    options, the fitted model included (``log_models=True``); a detector that has an
    ``MLflowCallback`` in its ``callbacks`` is left to it.

    A ``GridSearchCV`` or ``RandomizedSearchCV`` over a detector (or a pipeline
    holding one) gives one parent run with the search's summary (its settings,
    ``best_<param>`` params, the ``best_cv_score`` metric, ``cv_results.csv``, and the
    refitted best detector's training, plots and model) and one child run per
    candidate (its params and its ``cv_results_`` scores as metrics), as
    ``mlflow.sklearn.autolog`` does; the cross-validation fits themselves open no run.

    With ``mlflow.sklearn.autolog`` also on, the runs it opens are never written into:
    each detector fit (or search) gets a child run of them, so neither integration
    refuses the other's params.

    Parameters
    ----------
    disable : bool, default=False
        Switch autologging off.
    log_models : bool, default=True
        Log each fitted detector (a search: the refitted best one) as the MLflow
        model ``model`` of its run.
    **options
        Other keyword arguments of :class:`MLflowCallback` (``experiment_name``,
        ``run_name``, ``tags``, ``log_plots``, ``flush_interval``, ``max_retries``,
        ``timeout``, ``client``, ``asynchronous``, ...). By default a fit's plots are
        drawn and its run ended on a worker thread after ``fit`` returns
        (:func:`aedetect.tracking.flush` waits for them); ``asynchronous=False`` does
        it inside ``fit``.

    Examples
    --------
    >>> import aedetect.tracking
    >>> with aedetect.tracking.autolog(experiment_name="digits"):  # doctest: +SKIP
    ...     AEDetector().fit(X)
    """

    def __init__(self, disable=False, log_models=True, **options):
        options["log_models"] = log_models
        MLflowCallback(**options)  # a wrong option fails here, not in a later fit
        self._previous = _installed_autolog()
        _install_autolog(None if disable else _Autolog(options))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        _install_autolog(self._previous)
        return False
