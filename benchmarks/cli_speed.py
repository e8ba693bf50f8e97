"""Speed and memory of the ``aedetect`` command on generated files.

1. ``aedetect screen`` on a mixed 100,000 x 20 CSV (15 numeric columns with 5% gaps in
   one, 4 text categories, 1 boolean), defaults plus ``--out`` and ``--report``: wall
   time and where it goes (the command's own ``Time:`` line).
2. ``aedetect score`` streaming numeric CSVs of ``--rows`` x 50 (and a fifth of that)
   with a model fitted on 20,000 rows: peak RSS of the process and rows per second, to
   show that memory does not grow with the rows.

Every command runs as a child process on one thread (``OMP_NUM_THREADS=1``); peak RSS
is the child's ``ru_maxrss`` from ``os.wait4``. Writes ``cli_speed.md`` and
``cli_speed.csv`` to ``--out``.

    python benchmarks/cli_speed.py --out benchmarks/results/cli --rows 1000000
"""

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def mixed_csv(path, n_rows, seed=0):
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n_rows).round(4) for i in range(15)})
    for i in range(4):
        frame[f"c{i}"] = rng.choice(["red", "green", "blue", "grey", "black", "white"], n_rows)
    frame["flag"] = rng.rand(n_rows) < 0.3
    frame.loc[rng.rand(n_rows) < 0.05, "x0"] = np.nan
    frame.to_csv(path, index=False)


def numeric_csv(path, n_rows, n_columns=50, seed=0, chunk=100_000):
    """Rows with a low-rank structure plus noise, written chunk by chunk."""
    mixing = np.random.RandomState(0).normal(size=(5, n_columns))  # one structure
    rng = np.random.RandomState(seed)
    for start in range(0, n_rows, chunk):
        n = min(chunk, n_rows - start)
        block = rng.normal(size=(n, 5)) @ mixing + 0.1 * rng.normal(size=(n, n_columns))
        pd.DataFrame(block.round(4), columns=[f"v{i}" for i in range(n_columns)]).to_csv(
            path, mode="a" if start else "w", header=start == 0, index=False)


def measured(args, cwd):
    """Run the command under a wait4 so its own peak RSS is known."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "aedetect", *map(str, args)],
                                   cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"aedetect {' '.join(map(str, args))} failed:\n{err.read()}")
        return seconds, usage.ru_maxrss / 1024, out.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/cli")
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the largest file scored (default 1,000,000)")
    parser.add_argument("--screen-rows", type=int, default=100_000)
    options = parser.parse_args()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mixed_csv(tmp / "mixed.csv", options.screen_rows)
        seconds, rss, text = measured(["screen", "mixed.csv", "--out", "scored.csv",
                                       "--report", "report.html"], tmp)
        where = re.search(r"^Time: (.*)\.$", text, flags=re.M).group(1)
        records.append({"command": f"screen {options.screen_rows:,} x 20 mixed CSV, defaults, "
                                   "--out and --report", "rows": options.screen_rows,
                        "seconds": round(seconds, 1), "peak_rss_mib": round(rss),
                        "rows_per_s": round(options.screen_rows / seconds),
                        "where": where})
        print(records[-1], flush=True)
        numeric_csv(tmp / "train.csv", 20_000, seed=1)
        measured(["fit", "train.csv", "--out", "model"], tmp)
        for n_rows in sorted({options.rows // 5, options.rows}):
            numeric_csv(tmp / "big.csv", n_rows)
            size = (tmp / "big.csv").stat().st_size / 2**20
            seconds, rss, text = measured(["score", "model", "big.csv", "--out",
                                           "big_scored.csv"], tmp)
            records.append({"command": f"score {n_rows:,} x 50 numeric CSV ({size:.0f} MiB), "
                                       "chunks of 50,000 rows", "rows": n_rows,
                            "seconds": round(seconds, 1), "peak_rss_mib": round(rss),
                            "rows_per_s": round(n_rows / seconds),
                            "where": re.search(r"^Time: (.*)\.$", text,
                                               flags=re.M).group(1)})
            print(records[-1], flush=True)
            (tmp / "big.csv").unlink()
            (tmp / "big_scored.csv").unlink()
    with open(out / "cli_speed.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    lines = ["# `aedetect` command: speed and memory", "",
             f"`python benchmarks/cli_speed.py --out {options.out} --rows {options.rows}`, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPU cores, "
             f"OMP_NUM_THREADS=1; load average when it started {load[0]:.1f} (the machine is "
             "shared: other jobs ran beside it).", "",
             "| command | seconds | peak RSS (MiB) | rows/s | where the time goes |",
             "| --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {r['command']} | {r['seconds']} | {r['peak_rss_mib']} | {r['rows_per_s']:,} "
              f"| {r['where']} |" for r in records]
    lines += ["", "The seconds are the whole process (start-up and imports included, about "
              "3 s here); the last column is the command's own `Time:` line. Peak RSS is "
              "flat in the number of rows scored: `score` holds one chunk at a time."]
    (out / "cli_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
