"""Tracking work done off the fit's thread: one worker thread, and :func:`flush`.

A tracked fit hands its slow last step (rendering and logging the plots, then ending
the run) to one module-level worker, so ``fit`` returns without waiting for
matplotlib. One worker runs the jobs in the order they came, so matplotlib is never
used by two jobs at once. It is not a daemon thread: the interpreter waits for it at
exit, and a job is never cut off halfway.

A job returns ``None`` or the text of the :class:`TrackingWarning` that says what it
could not log; :func:`flush` issues those warnings in the caller's thread (so warning
filters and ``pytest.warns`` apply as for the fit itself), and at exit the ones never
flushed are issued too.
"""

import atexit
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, wait

from ._store import TrackingWarning, _short

_LOCK = threading.Lock()
_state = {"executor": None, "jobs": [], "failures": [], "atexit": False}


def _forget_after_fork():
    """A forked child has no worker thread: start afresh (a new worker on first use)."""
    global _LOCK
    _LOCK = threading.Lock()
    _state.update(executor=None, jobs=[], failures=[])


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _message(future):
    """The warning text of a finished job, or ``None`` if it logged everything."""
    exc = future.exception()
    if exc is not None:
        return f"Background MLflow logging failed: {_short(exc)}."
    return future.result()


def submit(job):
    """Queue ``job()`` on the worker; ``False`` when it cannot be queued (the interpreter
    is shutting down): the caller then runs it itself."""
    with _LOCK:
        if _state["executor"] is None:
            _state["executor"] = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="aedetect-tracking")
            if not _state["atexit"]:
                atexit.register(_report_at_exit)
                _state["atexit"] = True
        _collect(_state["jobs"])  # forget the finished jobs, keep their failures
        try:
            future = _state["executor"].submit(job)
        except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
            return False
        _state["jobs"].append(future)
    return True


def _collect(futures):
    """Move the finished ones of ``futures`` out of the queue; keep their failures.
    Call with the lock held."""
    finished = [future for future in futures if future.done()]
    for future in finished:
        message = _message(future)
        if message:
            _state["failures"].append(message)
    _state["jobs"] = [future for future in _state["jobs"] if future not in finished]


def _issue_failures(stacklevel):
    while True:
        with _LOCK:
            if not _state["failures"]:
                return
            message = _state["failures"].pop(0)
        warnings.warn(message, TrackingWarning, stacklevel=stacklevel + 1)


def flush(timeout=None):
    """Wait until all the tracking work handed to the background so far is done.

    A tracked fit returns before its plots are rendered and logged and before its run
    is ended (:class:`MLflowCallback` with ``asynchronous=True``, the default, and
    :func:`autolog`): a worker thread does that after the fit, as
    ``mlflow.flush_async_logging()`` does for MLflow's own asynchronous logging. Call
    this before reading those plots or the run's status, or before the tracking store
    goes away; the interpreter also waits for the worker at exit.

    What the background could not log is reported here, as for the fit's own logging:
    one :class:`TrackingWarning` per fit, naming the run and what is missing (the
    fit itself is unaffected). Failures never flushed are reported at exit.

    Parameters
    ----------
    timeout : float, default=None
        Seconds to wait at most; ``None`` waits as long as it takes.

    Raises
    ------
    TimeoutError
        When work is still running after ``timeout`` seconds (it goes on; call
        ``flush`` again to wait for it).

    Examples
    --------
    >>> import aedetect.tracking
    >>> aedetect.tracking.flush()
    """
    with _LOCK:
        futures = list(_state["jobs"])
    _, running = wait(futures, timeout)
    with _LOCK:
        _collect(futures)
    _issue_failures(stacklevel=2)
    if running:
        raise TimeoutError(f"{len(running)} background MLflow logging job(s) still running "
                           f"after {timeout} s; call aedetect.tracking.flush() again to wait "
                           "for them.")


def _report_at_exit():
    """Issue the failures never flushed (atexit runs after the worker has finished)."""
    with _LOCK:
        _collect(list(_state["jobs"]))
    _issue_failures(stacklevel=1)
