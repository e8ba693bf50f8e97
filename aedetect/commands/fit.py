"""``aedetect fit``: train a detector on a file and save it as an MLflow model directory
(no pickle); also the fitting that ``aedetect screen`` shares.

Tables are fitted as ``make_pipeline(detector)`` (:class:`~aedetect.preprocessing.
TableEncoder`, then the detector), images as the detector alone. The threshold is the
detector's ``contamination`` (outlier mode, the default), or with ``--fpr F
--calibration CLEAN`` calibrated on held-out normal rows (novelty mode, with p-values).
"""

import math
import sys
import time
import warnings

from . import CommandError, io

MODELS = {"ae": "AEDetector", "vae": "VAEDetector", "aae": "AAEDetector"}
#: ``--early-stopping`` -> the detectors' ``early_stopping``.
EARLY_STOPPING = {"off": False, "validation": True, "entropy": "entropy"}
#: Default epochs: about this many row visits in all, between 10 and 100 epochs.
ROW_VISITS = 1_000_000


def default_max_iter(n_rows):
    """Epochs when ``--max-iter`` is not given: ``ROW_VISITS / n_rows``, clipped to
    [10, 100] (100 epochs for up to 10,000 rows, 10 for 100,000 rows and more)."""
    return int(min(100, max(10, math.ceil(ROW_VISITS / max(1, n_rows)))))


class Data:
    """What a command read: a table (``frame``) or images (``images``, labels ``y``)."""

    def __init__(self, path):
        start = time.perf_counter()
        self.path = io.check_input(path)
        self.kind = io.kind_of(self.path)
        self.frame = self.images = self.y = None
        if self.kind == "table":
            self.frame = io.read_table(self.path)
            self.n_rows = len(self.frame)
            empty = [str(name) for name in self.frame.columns if self.frame[name].isna().all()]
            if empty:
                raise CommandError(f"{self.path}: column(s) {empty} are missing in every row: "
                                   "nothing to learn from them. Remove them from the file.")
        else:
            self.images, self.y = io.read_images(self.path)
            self.n_rows = self.images.shape[0]
        self.seconds = time.perf_counter() - start

    @classmethod
    def from_frame(cls, frame, name):
        """A table that is not read from a file (the demo's), called ``name``."""
        from pathlib import Path

        data = cls.__new__(cls)
        data.path, data.kind, data.frame = Path(name), "table", frame
        data.images = data.y = None
        data.n_rows, data.seconds = len(frame), 0.0
        return data

    @property
    def X(self):
        return self.frame if self.kind == "table" else self.images

    def shape_text(self):
        if self.kind == "table":
            return f"{self.n_rows} rows x {self.frame.shape[1]} columns"
        return f"{self.n_rows} images of {' x '.join(map(str, self.images.shape[1:]))}"


def check_threshold_options(args):
    """``--fpr`` and ``--calibration`` go together; ``--contamination`` excludes them."""
    if (args.fpr is None) != (args.calibration is None):
        raise CommandError("--fpr F and --calibration CLEAN go together: pass both (novelty "
                           "mode) or neither (outlier mode, --contamination).")
    if args.fpr is not None and args.contamination is not None:
        raise CommandError("--contamination and --fpr are two ways to set the threshold: "
                           "pass one of them.")
    if args.fpr is not None and not 0.0 < args.fpr < 1.0:
        raise CommandError(f"--fpr must be in (0, 1), got {args.fpr}.")
    if args.model not in MODELS:
        raise CommandError(f"unknown model {args.model!r}: choose one of {', '.join(MODELS)}.")


def build_detector(args, data, callbacks):
    """The unfitted detector the options describe."""
    import aedetect

    if args.architecture == "conv" and data.kind != "images":
        raise CommandError(f"--architecture conv is for images (.npz or idx files); "
                           f"{data.path} is a table. Drop --architecture conv.")
    contamination = "auto" if args.contamination is None else args.contamination
    max_iter = args.max_iter or default_max_iter(data.n_rows)
    return getattr(aedetect, MODELS[args.model])(
        contamination=contamination, max_iter=max_iter, architecture=args.architecture,
        early_stopping=EARLY_STOPPING[args.early_stopping],
        random_state=args.random_state, device=args.device, callbacks=callbacks or None)


def detector_of(estimator):
    """The detector of a fitted pipeline, or the detector itself."""
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def encoded(estimator, X):
    """``X`` as the detector takes it: through the preprocessing of a pipeline."""
    return estimator[:-1].transform(X) if hasattr(estimator, "steps") else X


def fit_estimator(args, data, callbacks=(), progress=False):
    """Fit the detector (with preprocessing for a table) on ``data``, calibrate it when
    asked; returns the fitted estimator and the seconds it took."""
    from .._training import ProgressBar
    from ..preprocessing import make_pipeline

    callbacks = [*callbacks, *([ProgressBar("training")] if progress else [])]
    detector = build_detector(args, data, callbacks)
    start = time.perf_counter()
    estimator = make_pipeline(detector) if data.kind == "table" else detector
    estimator.fit(data.X)
    if args.fpr is not None:
        calibrate(estimator, data, args.calibration, args.fpr)
    return estimator, time.perf_counter() - start


def calibrate(estimator, data, path, fpr):
    """``calibrate`` the detector on the held-out normal rows in ``path``."""
    clean = Data(path)
    if clean.kind != data.kind:
        raise CommandError(f"--calibration {path} holds {clean.kind} but the data holds "
                           f"{data.kind}.")
    if data.kind == "table":
        check_columns(list(data.frame.columns), list(clean.frame.columns), path)
    detector_of(estimator).calibrate(encoded(estimator, clean.X), fpr)


def check_columns(expected, found, path):
    """Refuse a table whose columns differ from ``expected``, naming the missing and the
    extra ones."""
    missing = [name for name in expected if name not in set(found)]
    extra = [name for name in found if name not in set(expected)]
    if missing or extra:
        raise CommandError(f"{path}: the columns differ from the model's: missing {missing}, "
                           f"extra {extra}. Pass a file with the columns the model was "
                           "fitted on.")


def threshold_text(detector):
    """How ``offset_`` was set, in words."""
    record = getattr(detector, "threshold_", None) or {}
    method = record.get("method")
    if method == "fpr":
        return (f"calibrated for a false-positive rate of {record['fpr']:g} on "
                f"{record['n_rows']} held-out normal rows (novelty mode)")
    if method == "contamination":
        return (f"contamination {record['contamination']:g}: the "
                f"{record['contamination']:.1%} lowest of {record['n_rows']} training scores")
    return (f"'auto': median - 3 x 1.4826 x MAD of the {record.get('n_rows', '?')} training "
            "scores (outlier mode)")


def run(args):
    """``aedetect fit DATA --out MODEL_DIR``."""
    from pathlib import Path

    from ..tracking import save_model

    check_threshold_options(args)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"{out} already exists: a saved model is never overwritten. "
                           "Choose a new --out, or delete the old one first.")
    data = Data(args.data)
    estimator, seconds = fit_estimator(args, data, progress=show_progress(args))
    detector = detector_of(estimator)
    with warnings.catch_warnings():  # MLflow asks for an input example; none is needed
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        save_model(estimator, out)
    print(f"Fitted {type(detector).__name__} on {data.path} ({data.shape_text()}): "
          f"{detector.n_iter_} epochs in {seconds:.1f} s.")
    print(f"Threshold: {threshold_text(detector)}; offset_ = {detector.offset_:.6g}.")
    print(f"Saved the model (no pickle) to {out}; score files with: aedetect score {out} DATA "
          "--out SCORED.csv")
    return 0


def show_progress(args):
    """Progress on stderr when it is a terminal, or with ``--progress``."""
    return bool(getattr(args, "progress", False)) or sys.stderr.isatty()

