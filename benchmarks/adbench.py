"""ADBench unsupervised protocol: aedetect against PyOD and IsolationForest.

For every ``.npz`` file (arrays ``X`` and ``y``, ``y == 1`` for outliers) in a data
directory and every seed, the rows are split 70/30, stratified on ``y``, with
``random_state=seed``; each method is fitted on the training part WITHOUT labels and
scores the test part; AUC-ROC and AUC-PR (average precision) are computed with the
outliers as the positive class. Every method runs with its library's default
parameters; only ``random_state`` (the seed) and ``device`` are set.

Writes ``<out>/adbench.csv`` (one row per dataset, seed and method, written as each
run finishes, with fit and score seconds) and ``<out>/adbench.md`` (mean AUC-ROC and
AUC-PR over the seeds per dataset, the mean over datasets, and the machine, versions
and date).

Example::

    pip install -e ".[bench]"
    python benchmarks/adbench.py ../shared/data/adbench --out benchmarks/results
    python benchmarks/adbench.py DATA --methods AEDetector IsolationForest --seeds 0
"""

import argparse
import csv
import dataclasses
import functools
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir():
    """``../shared/data/adbench`` beside the working directory or the repository."""
    for base in (Path.cwd(), REPO_ROOT):
        candidate = base.parent / "shared" / "data" / "adbench"
        if candidate.is_dir():
            return str(candidate)
    return "../shared/data/adbench"
CSV_FIELDS = ["dataset", "n_samples", "n_features", "outlier_pct", "seed", "method",
              "auc_roc", "auc_pr", "fit_seconds", "score_seconds"]


# --------------------------------------------------------------------- methods
@dataclasses.dataclass(frozen=True)
class Method:
    """A contender: ``make(seed, device)`` returns an unfitted estimator and
    ``outlier_score(estimator, X)`` returns scores where HIGHER means MORE OUTLYING
    (the sign used for the AUCs, whatever the library's convention)."""

    name: str
    make: callable
    outlier_score: callable
    requires: str = ""
    cost: float = 1.0


def minus_score_samples(estimator, X):
    """scikit-learn convention (aedetect, IsolationForest): score_samples is higher
    for normal rows, so the outlier score is its negation."""
    return -estimator.score_samples(X)


def pyod_decision_function(estimator, X):
    """PyOD convention: decision_function is already higher for outliers."""
    return estimator.decision_function(X)


def make_aedetect(class_name, seed, device, **params):
    import aedetect

    return getattr(aedetect, class_name)(random_state=seed, device=device, **params)


def make_pyod(class_name, seed, device, **params):
    import torch

    if class_name == "AutoEncoder":
        from pyod.models.auto_encoder import AutoEncoder as cls
    else:
        from pyod.models.vae import VAE as cls
    return cls(random_state=seed, device=torch.device(device), verbose=0, **params)


def make_iforest(seed, device):
    from sklearn.ensemble import IsolationForest

    return IsolationForest(random_state=seed)


def aedetect_method(class_name, name=None, **params):
    """A registry entry for an aedetect detector (``params`` override its defaults)."""
    return Method(name or class_name, functools.partial(make_aedetect, class_name, **params),
                  minus_score_samples)


def default_methods():
    """Every method of the benchmark; aedetect detectors that the installed package
    does not export yet are left out."""
    import aedetect

    methods = [aedetect_method(name) for name in ("AEDetector", "VAEDetector", "AAEDetector")
               if name in aedetect.__all__]
    if "EnsembleDetector" in aedetect.__all__:  # three fits: the default members
        methods.append(Method("EnsembleDetector",
                              functools.partial(make_aedetect, "EnsembleDetector"),
                              minus_score_samples, cost=3.0))
    methods += [
        Method("PyOD-AutoEncoder", functools.partial(make_pyod, "AutoEncoder"),
               pyod_decision_function, requires="pyod", cost=3.0),
        Method("PyOD-VAE", functools.partial(make_pyod, "VAE"), pyod_decision_function,
               requires="pyod", cost=9.0),
        Method("IsolationForest", make_iforest, minus_score_samples, cost=0.2),
    ]
    return {method.name: method for method in methods}


def select_methods(registry, names):
    """The registry entries named in ``names`` (all when ``None``), checking their
    optional requirements."""
    names = list(registry) if names is None else names
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise SystemExit(f"Unknown method(s) {unknown}; choose from {list(registry)}.")
    selected = [registry[name] for name in names]
    for method in selected:
        if method.requires and not _importable(method.requires):
            raise SystemExit(f"{method.name} needs the '{method.requires}' package: "
                             "pip install 'aedetect[bench]', or leave it out with --methods.")
    return selected


def _importable(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------ protocol
def load_dataset(path):
    """``X`` as float64 and ``y`` as 0/1 ints from an ADBench ``.npz`` file."""
    with np.load(path) as data:
        X = np.asarray(data["X"], dtype=np.float64)
        y = np.asarray(data["y"]).astype(int).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: expected X of shape (n, d) and y of shape (n,), got "
                         f"{X.shape} and {y.shape}.")
    return X, y


def dataset_name(path):
    """``'2_annthyroid.npz'`` -> ``'annthyroid'`` (ADBench prefixes files with an id)."""
    stem = Path(path).stem
    prefix, _, rest = stem.partition("_")
    return rest if prefix.isdigit() and rest else stem


def split(X, y, seed, test_size=0.3):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=test_size, stratify=y, shuffle=True,
                            random_state=seed)


def run_one(path, seed, method, device="cpu", threads=2):
    """Fit ``method`` on the training split of one dataset and seed; return a CSV row."""
    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score

    torch.set_num_threads(threads)
    X, y = load_dataset(path)
    X_train, X_test, _, y_test = split(X, y, seed)
    estimator = method.make(seed, device)
    start = time.perf_counter()
    estimator.fit(X_train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores = np.asarray(method.outlier_score(estimator, X_test), dtype=np.float64)
    score_seconds = time.perf_counter() - start
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{method.name} gave non-finite scores on {path} (seed {seed}).")
    return {
        "dataset": dataset_name(path), "n_samples": X.shape[0], "n_features": X.shape[1],
        "outlier_pct": round(100 * y.mean(), 2), "seed": seed, "method": method.name,
        "auc_roc": roc_auc_score(y_test, scores),
        "auc_pr": average_precision_score(y_test, scores),
        "fit_seconds": fit_seconds, "score_seconds": score_seconds,
    }


def warm_up(threads, pyod=True):
    """Once per process: pin the torch threads, take a first Adam step and (``pyod``)
    compile PyOD's numba scorer, so that no run's timing includes one-off costs."""
    import torch

    torch.set_num_threads(threads)
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(layer.parameters())
    layer(torch.ones(2, 2)).sum().backward()
    optimizer.step()
    if pyod and _importable("pyod"):
        from pyod.utils.stat_models import pairwise_distances_no_broadcast

        for dtype in (np.float32, np.float64):
            pairwise_distances_no_broadcast(np.zeros((2, 2), dtype), np.ones((2, 2), dtype))


def _run_task(task):
    return run_one(*task)


def run_benchmark(paths, methods, seeds, csv_path, device="cpu", threads=2, jobs=1,
                  progress=True):
    """Run every (dataset, seed, method), ``jobs`` processes at a time, appending each
    row to ``csv_path`` as it finishes. Returns the rows."""
    # Costliest runs first (file size x the method's relative cost), so parallel
    # workers finish together.
    tasks = [(path, seed, method, device, threads)
             for path in paths for seed in seeds for method in methods]
    tasks.sort(key=lambda task: os.path.getsize(task[0]) * task[2].cost, reverse=True)
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        pyod = any(method.requires == "pyod" for method in methods)
        for row in _execute(tasks, jobs, threads, pyod):
            writer.writerow(row)
            handle.flush()
            rows.append(row)
            if progress:
                print(f"[{len(rows)}/{len(tasks)}] {row['dataset']:>12} seed {row['seed']} "
                      f"{row['method']:<22} AUC-ROC {row['auc_roc']:.4f} "
                      f"AUC-PR {row['auc_pr']:.4f} fit {row['fit_seconds']:.1f}s",
                      flush=True)
    return rows


def _execute(tasks, jobs, threads, pyod):
    if jobs == 1:
        warm_up(threads, pyod)
        yield from map(_run_task, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs, initializer=warm_up, initargs=(threads, pyod)) as pool:
        yield from pool.imap_unordered(_run_task, tasks)


# -------------------------------------------------------------------- report
def read_rows(csv_path):
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("auc_roc", "auc_pr", "fit_seconds", "score_seconds", "outlier_pct"):
            row[key] = float(row[key])
        for key in ("n_samples", "n_features", "seed"):
            row[key] = int(row[key])
    return rows


def summarize(rows, metric, methods=None):
    """``{dataset: {method: mean over seeds}}`` plus the methods that have rows
    (in the order of ``methods``, then any other in first-seen order)."""
    sums, seen = {}, []
    for row in rows:
        if row["method"] not in seen:
            seen.append(row["method"])
        cell = sums.setdefault(row["dataset"], {}).setdefault(row["method"], [])
        cell.append(row[metric])
    ordered = [m for m in (methods or []) if m in seen]
    ordered += [m for m in seen if m not in ordered]
    table = {dataset: {method: float(np.mean(values)) for method, values in cells.items()}
             for dataset, cells in sorted(sums.items(), key=lambda item: item[0].lower())}
    return table, ordered


def markdown_table(rows, metric, digits=3, methods=None, transpose=False):
    """Markdown table of ``metric`` (mean over seeds) per dataset and method, with the
    mean over datasets (only over datasets every method finished). Datasets are rows
    and methods columns, or the other way round with ``transpose``."""
    table, methods = summarize(rows, metric, methods)
    complete = [cells for cells in table.values() if all(m in cells for m in methods)]
    mean_name = f"**mean ({len(complete)} datasets)**"
    matrix = {dataset: [f"{cells[m]:.{digits}f}" if m in cells else "" for m in methods]
              for dataset, cells in table.items()}
    matrix[mean_name] = [f"**{np.mean([c[m] for c in complete]):.{digits}f}**"
                         if complete else "" for m in methods]
    if transpose:
        names = list(matrix)
        header, body = ["method", *names], [[m, *(matrix[d][i] for d in names)]
                                            for i, m in enumerate(methods)]
    else:
        header, body = ["dataset", *methods], [[d, *values] for d, values in matrix.items()]
    lines = ["| " + " | ".join(header) + " |",
             "| --- | " + " | ".join("---:" for _ in header[1:]) + " |"]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)


def environment_lines(device, threads, jobs):
    import sklearn
    import torch

    versions = [f"Python {platform.python_version()}", f"torch {torch.__version__}",
                f"scikit-learn {sklearn.__version__}", f"numpy {np.__version__}"]
    for module in ("aedetect", "pyod"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            pass
    cpu = _cpu_name()
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else None
    return [f"- Date: {time.strftime('%Y-%m-%d')}",
            f"- Machine: {platform.system()} {platform.machine()}, {cpu}, "
            f"{os.cpu_count()} logical CPUs" + (f", GPU {gpu}" if gpu else ""),
            f"- Device: {device}; torch threads per process: {threads}; "
            f"parallel processes: {jobs}",
            "- Versions: " + ", ".join(versions)]


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_report(rows, md_path, header_lines, title="ADBench results", methods=None,
                 transpose=False, description="Every method uses its library's default "
                                              "parameters."):
    seeds = sorted({row["seed"] for row in rows})
    parts = [f"# {title}", "",
             "ADBench unsupervised protocol: stratified 70/30 train/test split per seed "
             f"(seeds {', '.join(map(str, seeds))}), fit on the training part without labels, "
             "AUC on the test part; each cell is the mean over the seeds. " + description,
             "", *header_lines, "",
             "## AUC-ROC", "", markdown_table(rows, "auc_roc", methods=methods, transpose=transpose), "",
             "## AUC-PR (average precision)", "", markdown_table(rows, "auc_pr", methods=methods, transpose=transpose), "",
             "## Fit seconds (mean over seeds)", "",
             markdown_table(rows, "fit_seconds", digits=2, methods=methods,
                            transpose=transpose), ""]
    Path(md_path).write_text("\n".join(parts))


# ----------------------------------------------------------------------- CLI
def find_datasets(data_dir, names=None):
    paths = sorted(Path(data_dir).glob("*.npz"))
    if names:
        paths = [p for p in paths if dataset_name(p) in names or p.stem in names]
    if not paths:
        raise SystemExit(f"No .npz datasets found in {data_dir}"
                         + (f" matching {names}" if names else "") + ".")
    return paths


def take_include(argv):
    """``(argv without --include PATH, PATH or None)``: the option the reports of
    ``tune.py`` and ``heldout.py`` take (the rows of an adbench.py CSV to add)."""
    argv, include = list(argv), None
    if "--include" in argv:
        position = argv.index("--include")
        include = argv[position + 1]
        del argv[position:position + 2]
    return argv, include


def build_parser(description=__doc__):
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?", default=default_data_dir(),
                        help="folder of ADBench .npz files (default: %(default)s)")
    parser.add_argument("--out", default="benchmarks/results",
                        help="folder for the CSV and markdown (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="methods to run (default: all available)")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="dataset names to keep, e.g. cardio thyroid (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads per process (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs in parallel processes (default: %(default)s)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the markdown from an existing CSV")
    return parser


def main(argv=None, registry=None, name="adbench", title="ADBench results", transpose=False,
         description=None):
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    order = None
    if args.report_only:
        rows = read_rows(csv_path)
        order = list(registry if registry is not None else default_methods())
    else:
        import torch

        torch.set_num_threads(args.threads)
        registry = registry if registry is not None else default_methods()
        methods = select_methods(registry, args.methods)
        paths = find_datasets(args.data_dir, args.datasets)
        print(f"{len(paths)} datasets x {len(args.seeds)} seeds x {len(methods)} methods "
              f"-> {csv_path}", flush=True)
        rows = run_benchmark(paths, methods, args.seeds, csv_path, device=args.device,
                             threads=args.threads, jobs=args.jobs)
        order = [method.name for method in methods]
    if args.report_only and md_path.exists():
        # Keep the machine and command of the run that produced the CSV.
        header = [line for line in md_path.read_text().splitlines() if line.startswith("- ")]
    else:
        command = " ".join(["python", Path(sys.argv[0]).as_posix(),
                            *(sys.argv[1:] if argv is None else argv)])
        header = environment_lines(args.device, args.threads, args.jobs)
        header.append(f"- Command: `{command}`")
    options = {} if description is None else {"description": description}
    write_report(rows, md_path, header, title=title, methods=order, transpose=transpose,
                 **options)
    print(Path(md_path).read_text())
    return rows


if __name__ == "__main__":
    main()
