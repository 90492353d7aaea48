"""Run the `clinical-bert` command as a user does (one thread, offline), for the tests that drive it end to end."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
       "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
CLI = [sys.executable, str(Path(sys.executable).parent / "clinical-bert")]


def run(args, cwd):
    "Run `clinical-bert <args>` in `cwd`; a non-zero exit fails the test with the command's output."
    r = subprocess.run(CLI + list(map(str, args)), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{args} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r
