"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``)."""

import shutil
import subprocess

import pytest

from aedetect.cli import main
from commands_support import mixed_table

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args, timeout=120):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--v=0", *args],
                          capture_output=True, text=True, timeout=timeout)


def _console(stderr):
    """The lines of Chromium's log that hold console messages or failed loads."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Failed to load resource" in line]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    mixed_table().to_csv(tmp_path / "data.csv", index=False)
    report = tmp_path / "report.html"
    assert main(["screen", str(tmp_path / "data.csv"), "--max-iter", "20",
                 "--report", str(report)]) == 0
    url = report.as_uri()
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr
    for text in ("aedetect screening report: data.csv", "Score distribution",
                 "The 20 most anomalous rows", "Which columns make rows anomalous",
                 "Training curve", "Model card", "AEDetector", "240 rows x 6 columns"):
        assert text in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") == 3
    # the page logs nothing to the console and fetches nothing
    assert _console(dom.stderr) == [] and 'src="http' not in dom.stdout
    control = tmp_path / "control.html"  # the check sees what a page logs
    control.write_text('<html><body><script>console.error("boom")</script></body></html>')
    assert any('"boom"' in line for line in _console(_chromium("--dump-dom",
                                                               control.as_uri()).stderr))
    shot = tmp_path / "shot.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1200,2400", url)
    assert done.returncode == 0 and shot.stat().st_size > 50_000  # figures, not a blank page
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1200)
    assert (pixels[..., :3].std(axis=(0, 1)) > 0.05).all()  # not one flat colour
