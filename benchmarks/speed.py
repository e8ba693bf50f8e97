"""Training and scoring speed of aedetect against PyOD at equal architecture.

Pairs: ``AEDetector`` vs PyOD ``AutoEncoder`` and, when aedetect exports it,
``VAEDetector`` vs PyOD ``VAE``. Each aedetect detector gets exactly the layer widths,
batch norm, dropout, weight decay and learning rate of PyOD's defaults (see ``PAIRS``),
the same number of epochs and the same batch size. On synthetic data of ``n`` rows x
50 features, the two contenders of a pair run alternately (A B, then B A, ...) and the
median over the repeats is reported:

- training throughput: rows x epochs / seconds spent in the epoch loop (PyOD's
  ``train``, aedetect's ``_train``; data preparation and the scoring of the training
  rows that both ``fit`` methods end with are not counted);
- scoring throughput: rows / seconds of ``score_samples`` (aedetect) or
  ``decision_function`` (PyOD, with its default scoring batch, the training batch size),
  the fastest of ``--score-repeats`` calls on each fitted detector (default 1);
- peak memory of scoring 1M x 50 rows: in a fresh process that has already loaded the
  fitted model and built the input, the peak resident memory (VmHWM, reset before
  scoring) minus the resident memory just before scoring.

``--compiled`` adds a third contender, aedetect with ``torch_compile=True``, alternating
with the other two. Its first fit in the process compiles the step (the graph is then reused
by every later fit of the same network and batch size): its throughput is the median
of the later repeats, and ``compile s`` is how much longer that first fit took.
``--roof-batch`` also trains each aedetect side of the AE pair at a large batch and
reports its arithmetic rate (training FLOP/s of the network's linear layers) as a share
of a large float32 matmul's FLOP/s, measured in the same process on the same threads.

Example::

    python benchmarks/speed.py --out benchmarks/results              # CPU, 2 threads
    python benchmarks/speed.py --device cuda --out benchmarks/results
"""

import argparse
import gc
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_FEATURES = 50

#: Per pair: PyOD's class and default architecture, and the aedetect parameters that
#: build the same network (widths, batch norm, dropout, optimizer settings).
PAIRS = {
    "AE": {
        "aedetect": ("AEDetector", {"hidden_layer_sizes": (64,), "latent_dim": 32,
                                    "batch_norm": True, "dropout": 0.2,
                                    "weight_decay": 1e-5, "learning_rate_init": 1e-3}),
        "pyod": ("pyod.models.auto_encoder", "AutoEncoder", {}),
    },
    "VAE": {
        # PyOD scores a row with one noise draw: n_draws=1 gives equal scoring work
        # (aedetect's default of 10 draws costs about 10 decoder passes per row).
        "aedetect": ("VAEDetector", {"hidden_layer_sizes": (128, 64, 32), "latent_dim": 2,
                                     "batch_norm": False, "dropout": 0.2, "n_draws": 1,
                                     "weight_decay": 1e-5, "learning_rate_init": 1e-3}),
        "pyod": ("pyod.models.vae", "VAE", {}),
    },
}


def synthetic(n_rows, seed=0):
    """``n_rows`` x 50 float32 rows on a 5-dimensional linear manifold plus noise."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(5, N_FEATURES)).astype(np.float32)
    X = rng.normal(size=(n_rows, 5)).astype(np.float32) @ basis
    X += 0.1 * rng.normal(size=X.shape).astype(np.float32)
    return X


#: The contenders: aedetect as it trains by default, aedetect with a compiled step, PyOD.
SIDES = ("aedetect", "compiled", "pyod")


def make_contender(pair, side, epochs, batch_size, device, seed=0):
    """An unfitted detector of ``pair`` (``'aedetect'``, ``'compiled'`` or ``'pyod'``)."""
    import torch

    if side != "pyod":
        import aedetect

        name, params = PAIRS[pair]["aedetect"]
        return getattr(aedetect, name)(max_iter=epochs, n_iter_no_change=epochs + 1,
                                       batch_size=batch_size, device=device,
                                       random_state=seed, torch_compile=side == "compiled",
                                       **params)
    module, name, params = PAIRS[pair]["pyod"]
    cls = getattr(__import__(module, fromlist=[name]), name)
    return cls(epoch_num=epochs, batch_size=batch_size, device=torch.device(device),
               random_state=seed, verbose=0, **params)


def timed_fit(detector, X, side):
    """Fit; return the seconds spent in the epoch loop (aedetect: between the trainer's
    ``on_train_begin`` and ``on_train_end`` callbacks; PyOD: its ``train`` method).
    Collects garbage first, so that no run pays for the previous one's."""
    gc.collect()
    if side != "pyod":
        timer = LoopTimer()
        detector.set_params(callbacks=[timer])
        detector.fit(X)
        return timer.seconds
    inner = detector.train
    spent = []

    def timed(*args, **kwargs):
        _sync(detector)
        start = time.perf_counter()
        result = inner(*args, **kwargs)
        _sync(detector)
        spent.append(time.perf_counter() - start)
        return result

    detector.train = timed
    try:
        detector.fit(X)
    finally:
        del detector.train
    return spent[0]


class LoopTimer:
    """A fit callback timing aedetect's training loop (device synchronized)."""

    def on_train_begin(self, trainer):
        _sync_device(trainer.generator.device)
        self.start = time.perf_counter()

    def on_train_end(self, trainer, error):
        _sync_device(trainer.generator.device)
        self.seconds = time.perf_counter() - self.start


def _sync_device(device):
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _sync(detector):
    _sync_device(getattr(detector, "device_", None) or getattr(detector, "device", None))


def score(detector, X, side):
    return detector.score_samples(X) if side != "pyod" else detector.decision_function(X)


def measure(pair, side, X, train_rows, epochs, batch_size, device, score_repeats=1):
    """Fit on the first ``train_rows`` rows of ``X``, then score all of ``X`` (the
    fastest of ``score_repeats`` calls): training and scoring throughput in rows/s."""
    detector = make_contender(pair, side, epochs, batch_size, device)
    train_seconds = timed_fit(detector, X[:train_rows], side)
    score_seconds = math.inf
    for _ in range(score_repeats):
        start = time.perf_counter()
        score(detector, X, side)
        score_seconds = min(score_seconds, time.perf_counter() - start)
    return train_rows * epochs / train_seconds, X.shape[0] / score_seconds


def run_speed(pairs, sizes, batch_sizes, repeats, min_rows, device, train_cap=None,
              on_result=None, sides=("aedetect", "pyod"), score_repeats=1):
    """Alternate the ``sides`` of each pair (``("aedetect", "pyod")`` or :data:`SIDES`;
    in order, then reversed, ...); return one result dict per configuration (each also
    passed to ``on_result(results_so_far)`` as soon as it is measured). The
    ``compiled`` side runs one extra first fit, left out of its figures: ``compile_s``
    is how much longer that fit took than the median."""
    results = []
    for pair in pairs:
        for n in sizes:
            X = synthetic(n)
            train_rows = min(n, train_cap) if train_cap else n
            epochs = max(1, math.ceil(min_rows / train_rows))
            for batch_size in batch_sizes:
                runs = {side: [] for side in sides}
                if "compiled" in sides:
                    first = measure(pair, "compiled", X, train_rows, epochs, batch_size, device)
                for repeat in range(repeats):
                    for side in (sides if repeat % 2 == 0 else sides[::-1]):
                        runs[side].append(measure(pair, side, X, train_rows, epochs,
                                                  batch_size, device, score_repeats))
                row = {"pair": pair, "n_rows": n, "train_rows": train_rows,
                       "batch_size": batch_size, "epochs": epochs, "repeats": repeats}
                for side in sides:
                    row[f"{side}_train_rows_s"] = float(np.median([r[0] for r in runs[side]]))
                    row[f"{side}_score_rows_s"] = float(np.median([r[1] for r in runs[side]]))
                for side in sides[:-1]:
                    prefix = "" if side == "aedetect" else f"{side}_"
                    row[f"{prefix}train_ratio"] = (row[f"{side}_train_rows_s"]
                                                   / row["pyod_train_rows_s"])
                    row[f"{prefix}score_ratio"] = (row[f"{side}_score_rows_s"]
                                                   / row["pyod_score_rows_s"])
                if "compiled" in sides:
                    rows = train_rows * epochs
                    row["compile_s"] = max(0.0, rows / first[0]
                                           - rows / row["compiled_train_rows_s"])
                print(f"{pair} n={n} batch={batch_size} epochs={epochs}: train "
                      + ", ".join(f"{side} {row[f'{side}_train_rows_s']:,.0f}" for side in sides)
                      + " rows/s; score "
                      + ", ".join(f"{side} {row[f'{side}_score_rows_s']:,.0f}" for side in sides)
                      + " rows/s" + (f"; first compiled fit +{row['compile_s']:.1f} s"
                                     if "compile_s" in row else ""), flush=True)
                results.append(row)
                if on_result is not None:
                    on_result(results)
    return results


def set_compile_options(pairs):
    """Apply ``KEY=VALUE`` strings (values as Python literals) to the options of
    ``torch_compile=True``: ``dynamic`` and ``fullgraph`` are ``torch.compile``'s own,
    any other key an inductor option."""
    import ast

    from aedetect.models import compiled

    options = {**compiled.COMPILE_OPTIONS, "options": dict(compiled.COMPILE_OPTIONS["options"])}
    for pair in pairs:
        key, _, text = pair.partition("=")
        value = ast.literal_eval(text)
        if key in ("dynamic", "fullgraph"):
            options[key] = value
        elif key == "guard_filter_fn" and value is None:
            options["options"].pop(key, None)
        else:
            options["options"][key] = value
    compiled.COMPILE_OPTIONS = options


# ------------------------------------------------------------------ roof
def matmul_flops(size=2048, repeats=5):
    """float32 FLOP/s of a ``size`` x ``size`` matmul on torch's current threads (the
    best of ``repeats`` after an untimed one): the CPU's arithmetic roof."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator) for _ in range(2))
    a @ b
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def training_flops_per_row(detector):
    """FLOPs one training row costs in the linear layers of a fitted aedetect detector:
    2 per multiply-add forward, twice that backward (the gradients of each layer's input
    and weights), less the first layer's input gradient, which no one computes."""
    import torch

    sizes = [(m.in_features, m.out_features) for m in detector.module_.modules()
             if isinstance(m, torch.nn.Linear)]
    return 6 * sum(i * o for i, o in sizes) - 2 * sizes[0][0] * sizes[0][1]


def run_roof(batch_size, min_rows, device, sides, repeats, roof):
    """Train the AE pair's network at ``batch_size`` on ``min_rows`` rows, for each
    aedetect side (alternating, the median of ``repeats``, after one untimed fit of
    each); one dict per side: rows/s, training FLOP/s and their share of ``roof``."""
    X = synthetic(max(min_rows, 4 * batch_size))
    runs = {side: [] for side in sides}
    for side in sides:
        detector = make_contender("AE", side, 1, batch_size, device)
        timed_fit(detector, X[:2 * batch_size], side)
    for repeat in range(repeats):
        for side in (sides if repeat % 2 == 0 else sides[::-1]):
            detector = make_contender("AE", side, 1, batch_size, device)
            runs[side].append(X.shape[0] / timed_fit(detector, X, side))
    results = []
    for side in sides:
        rows_s = float(np.median(runs[side]))
        flops = rows_s * training_flops_per_row(detector)
        results.append({"side": side, "batch_size": batch_size, "train_rows_s": rows_s,
                        "train_flops": flops, "roof_flops": roof, "roof_share": flops / roof})
        print(f"roof: {side} batch={batch_size}: {rows_s:,.0f} rows/s, "
              f"{flops / 1e9:.1f} GFLOP/s = {flops / roof:.0%} of the matmul's "
              f"{roof / 1e9:.1f} GFLOP/s", flush=True)
    return results


# ------------------------------------------------------------------ memory
def _rss_kib(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def rss_child(model_path, side, n_rows, threads):
    """Run in a fresh process: load the model, build the input, then score it and print
    the peak resident memory beyond what was resident before scoring (MiB)."""
    import torch

    torch.set_num_threads(threads)
    with open(model_path, "rb") as handle:
        detector = pickle.load(handle)
    X = synthetic(n_rows, seed=1)
    score(detector, X[:1000], side)  # first call's one-off allocations are not counted
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current resident size
    score(detector, X, side)
    peak = _rss_kib("VmHWM")
    print(f"RSS_MIB {(peak - before) / 1024:.1f} INPUT_MIB {X.nbytes / 2**20:.1f}")


def measure_rss(pair, side, n_rows, device, threads):
    """Peak MiB beyond the input and the model while scoring ``n_rows`` x 50 rows."""
    detector = make_contender(pair, side, 1, 256, device)
    detector.fit(synthetic(10_000))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pkl")
        with open(path, "wb") as handle:
            pickle.dump(detector, handle)
        out = subprocess.run([sys.executable, __file__, "--rss-child", path, side,
                              str(n_rows), str(threads)], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                 [str(Path(__file__).resolve().parent.parent),
                                  os.environ.get("PYTHONPATH", "")])})
    fields = out.stdout.split()
    return float(fields[fields.index("RSS_MIB") + 1]), float(fields[fields.index("INPUT_MIB") + 1])


# ------------------------------------------------------------------ report
def available_pairs(requested):
    import aedetect

    pairs = []
    for pair in requested:
        name = PAIRS[pair]["aedetect"][0]
        if name in aedetect.__all__:
            pairs.append(pair)
        else:
            print(f"{pair}: aedetect does not export {name}; pair skipped.", flush=True)
    return pairs


def write_outputs(results, memory, out, device, header, quiet=False, roof=()):
    import csv

    out.mkdir(parents=True, exist_ok=True)
    stem = f"speed_{device.split(':')[0]}"
    with open(out / f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    compiled = "compiled_train_rows_s" in results[0]
    lines = [f"# Speed: aedetect vs PyOD ({device})", "", *header, "",
             "Throughput in rows per second (median over the repeats); ratio = aedetect / "
             "PyOD. Training counts the epoch loop only, on the first `train rows` rows "
             "(the cost of a step does not depend on the size of the data); scoring scores "
             "all the rows." + (" `compiled`: aedetect with `torch_compile=True`, after "
                                "one extra first fit that compiles; `compile s`: how much "
                                "longer that first fit took." if compiled else ""), "",
             "| pair | rows | train rows | batch | epochs | train aedetect | train PyOD "
             "| train ratio |" + (" train compiled | compiled ratio | compile s |"
                                  if compiled else "")
             + " score aedetect | score PyOD | score ratio |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
             + (" ---: | ---: | ---: |" if compiled else "") + " ---: | ---: | ---: |"]
    for r in results:
        lines.append(
            f"| {r['pair']} | {r['n_rows']:,} | {r['train_rows']:,} | {r['batch_size']} | "
            f"{r['epochs']} | "
            f"{r['aedetect_train_rows_s']:,.0f} | {r['pyod_train_rows_s']:,.0f} | "
            f"**{r['train_ratio']:.1f}x** | "
            + (f"{r['compiled_train_rows_s']:,.0f} | **{r['compiled_train_ratio']:.1f}x** | "
               f"{r['compile_s']:.1f} | " if compiled else "")
            + f"{r['aedetect_score_rows_s']:,.0f} | "
            f"{r['pyod_score_rows_s']:,.0f} | **{r['score_ratio']:.1f}x** |")
    if roof:
        lines += ["", f"Arithmetic rate of training the AE pair's network at batch "
                  f"{roof[0]['batch_size']}: FLOPs of its linear layers per second, as a "
                  "share of a 2048 x 2048 float32 matmul's FLOP/s on the same threads "
                  f"({roof[0]['roof_flops'] / 1e9:.1f} GFLOP/s):", "",
                  "| side | train rows/s | GFLOP/s | share of the matmul roof |",
                  "| --- | ---: | ---: | ---: |"]
        for r in roof:
            lines.append(f"| {r['side']} | {r['train_rows_s']:,.0f} | "
                         f"{r['train_flops'] / 1e9:.1f} | {r['roof_share']:.0%} |")
    if memory:
        lines += ["", "Peak resident memory while scoring, beyond the input and the loaded "
                  "model (measured in a fresh process):", "",
                  "| pair | side | rows | input MiB | peak MiB beyond input |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for (pair, side, n_rows), (peak, size) in memory.items():
            lines.append(f"| {pair} | {side} | {n_rows:,} | {size:.0f} | {peak:.0f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    if not quiet:
        print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 256])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--min-rows", type=int, default=200_000,
                        help="epochs = ceil(min_rows / rows), so small sizes run long "
                             "enough to time (default: %(default)s)")
    parser.add_argument("--train-rows-cap", type=int, default=0,
                        help="train on at most this many rows per size (0: all rows); "
                             "scoring always uses every row")
    parser.add_argument("--rss-rows", type=int, default=1_000_000,
                        help="rows scored for the memory measurement (0 skips it)")
    parser.add_argument("--score-repeats", type=int, default=1,
                        help="score each fitted detector this many times and keep the "
                             "fastest call (default 1; more filters out the pauses of a "
                             "machine shared with other jobs)")
    parser.add_argument("--compiled", action="store_true",
                        help="also time aedetect with torch_compile=True (the 'compiled' "
                             "side, alternated with the other two)")
    parser.add_argument("--roof-batch", type=int, default=0,
                        help="batch of the matmul-roof measurement (default 0: skip it)")
    parser.add_argument("--compile-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="change aedetect.models.compiled.COMPILE_OPTIONS for the "
                             "compiled side: dynamic=False, fullgraph=..., any inductor "
                             "option (cpp_wrapper=False, size_asserts=True, ...), "
                             "guard_filter_fn=None (dynamo's guards on globals back on)")
    parser.add_argument("--fresh-compile-cache", action="store_true",
                        help="compile into an empty inductor cache (as on a new machine) "
                             "instead of the user's")
    parser.add_argument("--rss-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        path, side, n_rows, threads = args.rss_child
        return rss_child(path, side, int(n_rows), int(threads))
    if args.fresh_compile_cache:  # before torch is imported
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    sides = SIDES if args.compiled else ("aedetect", "pyod")

    import torch

    if args.compile_options:
        set_compile_options(args.compile_options)

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from adbench import environment_lines, warm_up

    warm_up(args.threads)
    pairs = available_pairs(args.pairs)
    header = environment_lines(args.device, args.threads, 1)
    command = " ".join(["python", "benchmarks/speed.py",
                        *(sys.argv[1:] if argv is None else argv)])
    header.append(f"- Command: `{command}`")
    out = Path(args.out)
    results = run_speed(pairs, args.sizes, args.batch_sizes, args.repeats, args.min_rows,
                        args.device, args.train_rows_cap,
                        on_result=lambda rows: write_outputs(rows, {}, out, args.device,
                                                             header, quiet=True),
                        sides=sides, score_repeats=args.score_repeats)
    roof = ()
    if args.roof_batch and "AE" in pairs:
        roof = run_roof(args.roof_batch, args.min_rows, args.device,
                        [side for side in sides if side != "pyod"], args.repeats,
                        matmul_flops())
    memory = {}
    if args.rss_rows:
        for pair in pairs:
            for side in ("aedetect", "pyod"):
                memory[(pair, side, args.rss_rows)] = measure_rss(
                    pair, side, args.rss_rows, args.device, args.threads)
    write_outputs(results, memory, out, args.device, header, roof=roof)


if __name__ == "__main__":
    main()
