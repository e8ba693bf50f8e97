"""The ``aedetect`` command (also ``python -m aedetect``): screen a table or images,
fit once and score many files, the demo.

Nothing heavy is imported before a subcommand runs, so ``aedetect --help`` is quick.
The subcommands live in :mod:`aedetect.commands`.
"""

import argparse
import sys

DESCRIPTION = ("Outlier detection with autoencoders: screen a table or images, fit once\n"
               "and score many files, or run the demo.")
EXAMPLES = """examples:
  aedetect screen data.csv --out scored.csv --report report.html
  aedetect screen data.parquet --fpr 0.01 --calibration clean.parquet --out scored.parquet
  aedetect fit train.csv --out model/ && aedetect score model/ new.csv --out scored.csv
  aedetect screen images.npz --architecture conv --report images.html
  aedetect demo
"""


def _run(module, args):
    """Import ``aedetect.commands.<module>`` only now, and run it."""
    import importlib

    return importlib.import_module(f"aedetect.commands.{module}").run(args)


def _print_tracking(callback):
    """Say where the demo's MLflow run is and how to look at it."""
    from .tracking import experiment_url
    from .tracking._store import ui_command

    run_id = callback.run_id_
    if run_id is None:
        print("MLflow: the run was not logged (see the warning above).")
        return
    uri = callback.tracking_uri_
    print(f"MLflow: run {run_id} logged to {uri}, with its parameters, per-epoch losses, "
          "AUC and plots.")
    if uri.startswith("http"):
        print(f"Look at it: open {experiment_url(callback.experiment_id_, uri)}")
    else:
        print(f"Look at it: {ui_command(uri)}  then open "
              f"{experiment_url(callback.experiment_id_)}")


def _contamination(text):
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'auto' or a number in (0, 0.5], got {text!r}")
    if not 0.0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"must be in (0, 0.5], got {text}")
    return value


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a positive whole number, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"a positive whole number, got {text}")
    return value


def _add_fit_options(parser):
    """The options of ``screen`` and ``fit``: the data, the model, the threshold."""
    parser.add_argument("data", metavar="DATA",
                        help="a .csv or .parquet table, or .npz / idx images")
    parser.add_argument("--model", default="ae",
                        help="ae (default), vae or aae: AEDetector, VAEDetector, AAEDetector")
    parser.add_argument("--architecture", choices=("dense", "conv"), default="dense",
                        help="conv: a convolutional network, for images (default dense)")
    threshold = parser.add_argument_group(
        "threshold", "outlier mode (the default): --contamination; novelty mode: --fpr F "
        "--calibration CLEAN, held-out rows known to be normal (gives p-values)")
    threshold.add_argument("--contamination", type=_contamination, default=None,
                           help="expected share of outliers in (0, 0.5], or auto (default: "
                                "auto, median - 3 x 1.4826 x MAD of the training scores)")
    threshold.add_argument("--fpr", type=float, default=None,
                           help="target false-positive rate in (0, 1), with --calibration")
    threshold.add_argument("--calibration", metavar="CLEAN", default=None,
                           help="file of held-out normal rows (same columns as DATA)")
    parser.add_argument("--max-iter", type=_positive, default=None,
                        help="epochs (default: 1,000,000 / rows, between 10 and 100)")
    parser.add_argument("--early-stopping", choices=("off", "validation", "entropy"),
                        default="off",
                        help="off (default): stop when the training loss stops improving; "
                             "validation: hold out 10%% of the rows and keep the best epoch on "
                             "them; entropy: keep the epoch whose training losses are the "
                             "most concentrated on few rows (no rows held out; for small "
                             "tables)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    _add_common(parser)


def _add_common(parser):
    parser.add_argument("--top", type=_positive, default=3,
                        help="contributing columns written per row (default 3)")
    parser.add_argument("--progress", action="store_true",
                        help="show progress on stderr (default: only when it is a terminal)")


def build_parser():
    """The argument parser of ``aedetect`` and its subcommands."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="aedetect", description=DESCRIPTION,
                                     epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"aedetect {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (default: one line)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    screen = commands.add_parser("screen", help="fit on a file and score all of its rows",
                                 description="Fit a detector on DATA and score every row.")
    _add_fit_options(screen)
    screen.add_argument("--out", metavar="SCORED", help="write every row with its results "
                        "to this .csv or .parquet file")
    screen.add_argument("--report", metavar="REPORT.html", help="write the HTML report")
    screen.add_argument("--mlflow", action="store_true",
                        help="log the run, the model and the report to MLflow")
    screen.add_argument("--show", type=int, default=10,
                        help="most anomalous rows to print (default 10)")
    screen.set_defaults(handler=lambda args: _run("screen", args))

    fit = commands.add_parser("fit", help="fit on a file and save the model",
                              description="Fit a detector on DATA and save it as an MLflow "
                                          "model directory (no pickle).")
    _add_fit_options(fit)
    fit.add_argument("--out", metavar="MODEL_DIR", required=True,
                     help="the model directory to create (never overwritten)")
    fit.set_defaults(handler=lambda args: _run("fit", args))

    score = commands.add_parser("score", help="score a file with a saved model",
                                description="Score every row of DATA with the model in "
                                            "MODEL_DIR, streaming the file in chunks.")
    score.add_argument("model_dir", metavar="MODEL_DIR", help="made by aedetect fit")
    score.add_argument("data", metavar="DATA", help="a .csv or .parquet table, or images")
    score.add_argument("--out", metavar="SCORED", required=True,
                       help="the .csv or .parquet file to write")
    score.add_argument("--chunk-rows", type=_positive, default=50_000,
                       help="rows read and scored at a time (default 50000)")
    _add_common(score)
    score.set_defaults(handler=lambda args: _run("score", args))

    demo = commands.add_parser("demo", help="screen a bundled table and write its report",
                               description="Screen a bundled table with planted anomalies.")
    demo.add_argument("--report", default="aedetect-demo-report.html",
                      help="where to write the report (default aedetect-demo-report.html)")
    demo.add_argument("--max-iter", type=_positive, default=200, help="epochs (default 200)")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    demo.add_argument("--random-state", type=int, default=0)
    demo.add_argument("--show", type=int, default=10, help="rows to list (default 10)")
    demo.add_argument("--no-tracking", action="store_true",
                      help="do not log the run to MLflow (default: log to MLflow's tracking "
                           "URI, MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    demo.set_defaults(handler=lambda args: _run("demo", args))
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(message))  # MLflow colours its warnings
    return f"aedetect: warning: {' '.join(text.split())}\n"


def main(argv=None):
    """Run ``aedetect`` with ``argv`` (default ``sys.argv[1:]``); returns the exit
    status: 0, 2 for a user error (one line on stderr), 130 when interrupted."""
    import warnings

    import os

    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line each
    warnings.formatwarning = _one_line_warning
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("aedetect: interrupted; no output was left half-written.", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # CommandError, or the library's data errors
        if args.debug:
            raise
        print(f"aedetect {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
