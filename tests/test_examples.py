"""Every example runs as documented (a smoke run: one epoch, few images) and takes the
same flags."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))
IMAGE_SCRIPTS = {"image_anomalies.py", "image_denoising.py", "vae_latent_manifold.py"}
FIGURES = {
    "aae_digits.py": ["aae_latent.png", "aae_samples.png", "aae_conditional.png"],
    "image_anomalies.py": ["anomalies.png"],
    "image_denoising.py": ["denoising.png"],
    "vae_digits_manifold.py": ["vae_digits_manifold.png", "vae_digits_codes.png"],
    "vae_latent_manifold.py": ["latent_manifold.png"],
}
COMMON_FLAGS = ("--out", "--max-iter", "--random-state", "--device", "--quiet")
IMAGE_FLAGS = ("--dataset", "--data-dir", "--max-train")


def run(script, *args, cwd):
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                               "MPLBACKEND": "Agg", "HOME": str(cwd)})


def test_every_example_is_listed():
    assert sorted(FIGURES) == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_examples_share_their_flags(script, tmp_path):
    result = run(script, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = COMMON_FLAGS + (IMAGE_FLAGS if script in IMAGE_SCRIPTS else ())
    missing = [flag for flag in expected if flag not in result.stdout]
    assert not missing, f"{script} lacks {missing}"
    assert "--epochs" not in result.stdout and "--seed" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_smoke_run(script, tmp_path):
    args = ["--max-iter", "1", "--quiet"]
    if script in IMAGE_SCRIPTS:
        args += ["--dataset", "digits", "--max-train", "150"]
    result = run(script, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # the default output folder, relative to where the command runs
    for name in FIGURES[script]:
        figure = tmp_path / "examples_out" / name
        assert figure.is_file() and figure.stat().st_size > 5000, name
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_examples_show_progress_by_default(tmp_path):
    result = run("image_denoising.py", "--max-iter", "2", "--max-train", "100",
                 "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch" in result.stderr and "2/2" in result.stderr
