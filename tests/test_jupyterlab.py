"""JupyterLab with the project's kernel: a headless server on loopback answers, lists the
`clinical-bert` kernel, and papermill runs a project notebook with that kernel."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    "A private Jupyter data dir with the project's kernel installed as README says."
    prefix = tmp_path_factory.mktemp("jupyter")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix),
                    "--name", "clinical-bert", "--display-name", "clinical-bert"], check=True,
                   capture_output=True)
    env = dict(os.environ, JUPYTER_PATH=str(prefix / "share" / "jupyter"),
               JUPYTER_RUNTIME_DIR=str(prefix / "runtime"), JUPYTER_CONFIG_DIR=str(prefix / "config"))
    return env


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_jupyterlab_server_lists_project_kernel(kernel_env):
    port, token = _free_port(), "cbtest"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT / 'nbs'}"]
    proc = subprocess.Popen(cmd, env=kernel_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base, status = f"http://127.0.0.1:{port}", None
        for _ in range(120):
            try:
                status = _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("jupyter lab exited: " + proc.stdout.read().decode()[-2000:])
                time.sleep(0.5)
        assert status is not None, "jupyter lab did not answer on loopback within 60 s"
        specs = _get(f"{base}/api/kernelspecs?token={token}")["kernelspecs"]
        assert "clinical-bert" in specs, f"project kernel missing; got {list(specs)}"
        contents = _get(f"{base}/api/contents?token={token}")
        assert any(c["name"] == "index.ipynb" for c in contents["content"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_papermill_runs_notebook_with_project_kernel(kernel_env, tmp_path, monkeypatch):
    import nbformat
    import papermill as pm
    for k, v in kernel_env.items():
        monkeypatch.setenv(k, v)
    # the project's own notebook runs headless with the project's kernel
    out = tmp_path / "10_cli.ipynb"
    pm.execute_notebook(str(ROOT / "nbs" / "10_cli.ipynb"), str(out), kernel_name="clinical-bert",
                        cwd=str(ROOT / "nbs"), progress_bar=False)
    nb = json.loads(out.read_text())
    assert not nb["metadata"]["papermill"]["exception"]
    assert all(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code" and c["source"])
    # and that kernel is this environment's Python, with the library importable
    probe = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "clinical-bert", "language": "python",
                                                                "display_name": "clinical-bert"}})
    probe.cells = [nbformat.v4.new_code_cell("import sys, clinical_bert; print(sys.executable)")]
    nbformat.write(probe, tmp_path / "probe.ipynb")
    pm.execute_notebook(str(tmp_path / "probe.ipynb"), str(tmp_path / "probe_out.ipynb"),
                        kernel_name="clinical-bert", progress_bar=False)
    printed = nbformat.read(tmp_path / "probe_out.ipynb", as_version=4).cells[-1].outputs[0]["text"].strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve()
