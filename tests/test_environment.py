"""How the runtime builds the trainer's environment on a host (helpers/runtime/environment.py), with the real uv
and pip: a Python the host lacks comes from uv's standalone builds, a host without uv gets venv + pip and is told
so, and a failed step ends the runtime in one line instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers.runtime import environment

CURRENT = {"framework": "lerobot", "lerobot": {"version": "0.6.1"}, "policy": {"type": "act"},
           "dataset": {"repo_id": "local/synthetic"}}
pytestmark = pytest.mark.slow


@pytest.fixture
def downloads_mirror():
    """A loopback stand-in for uv's Python download host (UV_PYTHON_INSTALL_MIRROR, uv's documented setting) that
    records what is asked of it and has nothing: a host that cannot download Python."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="this host's Python already suffices for LeRobot 0.6.1")
def test_an_older_host_python_is_fetched_by_uv_and_a_failed_fetch_is_one_line(tmp_path, monkeypatch,
                                                                              downloads_mirror):
    mirror, asked = downloads_mirror
    monkeypatch.setenv("TRAINYARD_ENV_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("UV_PYTHON_INSTALL_MIRROR", mirror)
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "pythons"))  # no Python uv fetched earlier
    monkeypatch.setenv("UV_PYTHON_PREFERENCE", "only-managed")  # nor a python3.12 this machine happens to have
    with pytest.raises(SystemExit) as failed:
        environment.ensure(CURRENT, log=lambda m: None)
    message = str(failed.value)
    assert message.startswith("the trainer environment could not be built: fetching Python 3.12 ")
    assert "the host has 3.11" in message and "UV_PYTHON_INSTALL_MIRROR" in message and "\n" not in message
    # uv asked its download host for a CPython 3.12 standalone build for this machine, as it does on a real host
    assert any("/cpython-3.12." in path and "x86_64-unknown-linux-gnu-install_only" in path for path in asked), asked
    assert not (tmp_path / "env" / ".trainyard-spec").exists()  # nothing claims a ready environment


@pytest.fixture
def host_without_uv(tmp_path, monkeypatch) -> list[str]:
    """No uv on PATH or in the runtime's tool folder, and an index with the Hub client but no uv; what is logged."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), "huggingface_hub"], check=True)
    assert not list(wheels.glob("uv-*"))
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + ":/usr/bin:/bin")
    monkeypatch.setenv("TRAINYARD_ENV_DIR", str(tmp_path / "env"))
    assert environment.shutil.which("uv") is None
    return []


def test_a_host_without_uv_builds_with_venv_and_pip_and_says_so(host_without_uv, tmp_path):
    said = host_without_uv
    bin_dir = environment.ensure({"framework": "command"}, log=said.append)
    assert any(line.startswith("uv could not be installed") for line in said), said
    assert "building the environment with venv + pip (uv is not available: slower)" in said
    subprocess.run([str(bin_dir / "python"), "-c", "import huggingface_hub"], check=True)
    assert environment.ensure({"framework": "command"}, log=said.append) == bin_dir
    assert said[-1] == f"environment ready: {tmp_path / 'env'} (cached)"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="this host's Python already suffices for LeRobot 0.6.1")
def test_without_uv_an_older_host_python_is_refused_in_one_line(host_without_uv):
    with pytest.raises(SystemExit) as refused:
        environment.ensure(CURRENT, log=host_without_uv.append)
    assert str(refused.value) == ("this needs Python >= 3.12 and the host has 3.11; without uv none can be fetched: "
                                  "install uv or a newer Python on the host")


def test_a_failed_install_step_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINYARD_ENV_DIR", str(tmp_path / "env"))
    broken = {**CURRENT, "lerobot": {"version": "0.4.4", "install": str(tmp_path / "no-such-checkout")}}
    with pytest.raises(SystemExit) as failed:
        environment.ensure(broken, log=lambda m: None)
    assert str(failed.value) == ("the trainer environment could not be built: uv pip install "
                                 + " ".join(environment.install_spec(broken)[-1]) + " failed")
