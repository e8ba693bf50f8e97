"""Helpers of the command-line tests: run the real ``aedetect`` command, write tables."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd

PLANTED = (5, 77, 150)  # rows whose 'pressure' is far outside its range


def run_cli(*args, cwd, timeout=300):
    """Run ``python -m aedetect ARGS`` in ``cwd`` on one thread, MLflow in ``cwd``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
    return subprocess.run([sys.executable, "-m", "aedetect", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def mixed_table(n_rows=240, seed=0):
    """Numbers with gaps, a text category with gaps, a boolean, a category of digits,
    and :data:`PLANTED` rows with an impossible pressure."""
    rng = np.random.RandomState(seed)
    temperature = rng.normal(20, 3, n_rows)
    frame = pd.DataFrame({
        "temperature": temperature.round(2),
        "pressure": (1000 + 2 * temperature + rng.normal(0, 1, n_rows)).round(2),
        "humidity": rng.uniform(30, 60, n_rows).round(1),
        "site": rng.choice(["north", "south", "east"], n_rows),
        "shift": rng.choice(["1", "2", "3"], n_rows),  # read back as numbers from CSV
        "checked": rng.rand(n_rows) < 0.5,
    })
    frame.loc[rng.rand(n_rows) < 0.05, "humidity"] = np.nan
    frame.loc[rng.rand(n_rows) < 0.05, "site"] = None
    frame.loc[list(PLANTED), "pressure"] = 1400.0
    return frame
