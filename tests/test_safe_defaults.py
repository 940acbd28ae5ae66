"""Work safe by default (issue: no spot run keeps its only checkpoints on the machine that can vanish) and the
inputs a new user broke: each is one clear line with exit 2 (or the corrected behaviour), through the real CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.backends.base import descriptor
from helpers.config import validate
from helpers.errors import ConfigError
from helpers.gpus import BY_KEY
from helpers.offers import Offer
from helpers.planning import plan_gpu

REPO = Path(__file__).resolve().parents[1]
INVOKE = REPO / ".venv/bin/invoke"
TOKEN = "hf_" + "d" * 34
COMMAND_JOB = {"job": {"name": "safe"}, "framework": "command", "command": {"run": "python train.py"}}


def run(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`invoke ...` as a user runs it: its own cwd and HOME (no .env or cache of this machine), no credentials."""
    full = {**os.environ, "HOME": str(cwd), "RUNPOD_API_KEY": "", "VERDA_CLIENT_ID": "", "VERDA_CLIENT_SECRET": "",
            "HF_TOKEN": "", **(env or {})}
    return subprocess.run([str(INVOKE), "-r", str(REPO), *args], cwd=cwd, capture_output=True, text=True, env=full,
                          timeout=timeout)


def write(tmp_path: Path, data: dict, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr.strip()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ the default store


@pytest.mark.parametrize("backend", ["runpod", "verda"])
def test_spot_without_a_store_or_token_is_refused_before_anything(tmp_path, backend):
    config = write(tmp_path, {**COMMAND_JOB, "resources": {"spot": True, "gpu": "H100"}})
    line = one_line_error(run("plan", "--config", str(config), "--backend", backend, "--offline", cwd=tmp_path))
    assert line == (f"error: {config}: checkpoint.store: unset, and a spot {backend} instance can vanish with its disk: "
                    "the checkpoints need a store outside it — set HF_TOKEN in .env (the default becomes "
                    "hf://<your user>/safe-checkpoints, private) or set checkpoint.store: hf://<org>/<repo>")


def test_spot_with_a_token_defaults_to_a_private_hub_repo_and_says_why(tmp_path):
    config = write(tmp_path, {**COMMAND_JOB, "resources": {"spot": True, "gpu": "H100"}})
    done = run("plan", "--config", str(config), "--backend", "verda", "--offline", "--json", cwd=tmp_path,
               env={"HF_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["store"] == "hf://<HF_TOKEN's user>/safe-checkpoints"  # the user comes from whoami at launch
    assert "a private Hub repo" in doc["store_why"] and "HF_TOKEN" in doc["secrets_required"]
    text = run("plan", "--config", str(config), "--backend", "verda", "--offline", cwd=tmp_path,
               env={"HF_TOKEN": TOKEN}).stdout
    assert "checkpoints: hf://<HF_TOKEN's user>/safe-checkpoints — the default for a spot verda instance" in text


def test_a_directory_store_on_a_vanishing_instance_is_refused_and_kept_where_it_survives(tmp_path):
    data = {**COMMAND_JOB, "resources": {"spot": True, "gpu": "H100"}, "checkpoint": {"store": "ckpts"}}
    config = write(tmp_path, data)
    line = one_line_error(run("plan", "--config", str(config), "--backend", "runpod", "--offline", cwd=tmp_path,
                              env={"HF_TOKEN": TOKEN}))
    assert "checkpoint.store: 'ckpts' is a directory on a spot runpod instance: it is lost with the instance" in line
    # on-demand and not relaunched, or on SLURM's shared filesystem: the directory is what the run keeps
    for backend, where in (("runpod", "on-demand, not relaunched"), ("slurm", "shared filesystem")):
        spot = backend == "slurm"
        config = write(tmp_path, {**data, "resources": {"spot": spot, "gpu": "H100"}})
        done = run("plan", "--config", str(config), "--backend", backend, "--offline", "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["store"] == "ckpts" and where in doc["store_why"], doc["store_why"]
    # --recover on an on-demand pod relaunches it: the same refusal
    job = validate({**data, "resources": {"spot": False, "gpu": "H100"}, "limits": {"recover": True}})
    with pytest.raises(ConfigError) as caught:
        plan_gpu(job, descriptor("runpod"), None, token=TOKEN, offline=True)
    assert "a runpod instance the launcher relaunches" in str(caught.value)


@pytest.mark.parametrize("spec", ["s3://bucket/ckpt", "gs://bucket/ckpt", "r2://b/c", "file:///tmp/x", "file:ckpt",
                                  "hf:/org/repo", "hf://just-org"])
def test_unknown_store_schemes_are_refused_in_one_line(tmp_path, spec):
    config = write(tmp_path, {**COMMAND_JOB, "checkpoint": {"store": spec}})
    line = one_line_error(run("plan", "--config", str(config), "--offline", cwd=tmp_path))
    assert f"{config}: checkpoint.store: '{spec}'" in line
    assert ("is not supported — use hf://<org>/<repo> (a private Hub repo) or a directory path" in line
            or "is not hf://<org>/<repo>" in line)


def test_a_plain_or_absolute_directory_store_is_still_a_directory():
    for spec in ("runs/x/store", "/data/ckpt", "./ckpt", "C:/ckpt"):
        assert validate({**COMMAND_JOB, "checkpoint": {"store": spec}}).store == spec


# ------------------------------------------------------------------------------------ inputs that broke


def test_a_binary_config_is_one_line(tmp_path):
    config = tmp_path / "garbage.yaml"
    config.write_bytes(bytes([0xFF, 0xFE, 0x00, 0x81, 0x9C]) + os.urandom(200))
    line = one_line_error(run("plan", "--config", str(config), "--offline", cwd=tmp_path))
    assert line == (f"error: {config}: not a text file (byte 0xff at offset 0 is not UTF-8) — "
                    "pass a YAML job config (examples in configs/)")


def test_a_key_given_twice_in_one_mapping_is_refused_with_both_lines(tmp_path):
    config = tmp_path / "twice.yaml"
    config.write_text("job: {name: twice}\nframework: command\ncommand: {run: echo}\ntraining:\n  steps: 5\n"
                      "training:\n  steps: 9\n")
    line = one_line_error(run("plan", "--config", str(config), "--offline", cwd=tmp_path))
    assert line == (f"error: {config}: training: given twice in one mapping (lines 4 and 6) — keep one of them "
                    "(merge the two into one section)")
    nested = tmp_path / "nested.yaml"
    nested.write_text("job: {name: n}\nframework: command\ncommand: {run: echo}\ntraining:\n  steps: 5\n  steps: 9\n")
    assert "steps: given twice in one mapping (lines 5 and 6)" in one_line_error(
        run("plan", "--config", str(nested), "--offline", cwd=tmp_path))


def test_non_ascii_job_names_get_distinct_readable_run_ids():
    ids = [validate({**COMMAND_JOB, "job": {"name": name}}).run_id
           for name in ("ロボット", "机器人", "café-run", "cafe-run", "робот")]
    assert len(set(ids)) == len(ids), ids
    assert ids[2].startswith("cafe-run-") and ids[3] == "cafe-run"  # readable where the name allows
    assert all(i.isascii() and i != "run" for i in ids)
    assert validate({**COMMAND_JOB, "job": {"name": "ロボット"}}).run_id == ids[0]  # stable: the same name, the same id


def test_spot_planned_offline_without_spot_prices_says_it_is_on_demand(tmp_path):
    config = write(tmp_path, {**COMMAND_JOB, "resources": {"spot": True, "gpu": "RTX 4090"},
                              "checkpoint": {"store": "hf://me/safe-ckpt"}})
    done = run("plan", "--config", str(config), "--backend", "runpod", "--offline", "--json", cwd=tmp_path,
               env={"HF_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["spot_requested"] is True and doc["spot"] is False
    note = ("resources.spot is true but the dated price table has no spot offer that fits: this plan is ON-DEMAND")
    assert any(w.startswith(note) for w in doc["warnings"]) and note in done.stderr


def test_an_unknown_flag_gets_a_did_you_mean(tmp_path):
    line = one_line_error(run("runpod.train", "--gpus", "2", "-c", "x.yaml", cwd=tmp_path))
    assert line == "error: --gpus: not a flag of runpod.train — did you mean --gpu?"
    line = one_line_error(run("local.train", "--zzzzzz", cwd=tmp_path))
    assert line == "error: --zzzzzz: not a flag of local.train — `invoke local.train --help` lists its flags"


def test_the_verda_location_error_names_the_key_that_was_set():
    places = [Offer("verda", BY_KEY["H100-SXM"], 1, 2.0, location="FIN-01")]
    job = validate({**COMMAND_JOB, "resources": {"gpu": "H100"}, "verda": {"location": "ICE-01"}})
    with pytest.raises(ConfigError) as caught:
        plan_gpu(job, descriptor("verda"), places, offline=True)
    assert "drop verda.location" in str(caught.value) and "drop resources.location" not in str(caught.value)
    job = validate({**COMMAND_JOB, "resources": {"gpu": "H100", "location": "ICE-01"}})
    with pytest.raises(ConfigError) as caught:
        plan_gpu(job, descriptor("verda"), places, offline=True)
    assert "drop resources.location" in str(caught.value)


def test_chtc_submit_off_the_access_point_is_not_a_success(tmp_path):
    config = write(tmp_path, {"job": {"name": "small"}, "framework": "command", "command": {"run": "python t.py"},
                              "chtc": {"image": "me/train:1"}})
    done = run("chtc.submit", "--config", str(config), cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 1 and "not submitted" in done.stdout, (done.returncode, done.stdout, done.stderr)


def test_dry_run_without_network_falls_back_to_the_price_table_in_seconds(tmp_path):
    """Keys set, every endpoint refusing connections: the plan comes from the dated table, with a note."""
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {"RUNPOD_API_KEY": "rpa_" + "k" * 20, "RUNPOD_API_BASE_URL": dead, "HF_ENDPOINT": dead, "HF_TOKEN": TOKEN,
           "VERDA_CLIENT_ID": "id", "VERDA_CLIENT_SECRET": "s" * 20, "VERDA_BASE_URL": dead + "/v1",
           "VERDA_SSH_PRIVATE_KEY": str(tmp_path / "none")}
    for args in (("runpod.train", "--config", str(REPO / "configs/act.yaml"), "--dry-run"),
                 ("verda.train", "--config", str(REPO / "configs/act.yaml"), "--dry-run")):
        started = time.monotonic()
        done = run(*args, cwd=tmp_path, env=env, timeout=60)
        took = time.monotonic() - started
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert took < 5, (args, took)
        assert "planning from the dated price table" in done.stdout and "is unreachable" in done.stdout
    # a real launch on that plan creates nothing and says why, at once
    done = run("verda.train", "--config", str(REPO / "configs/act.yaml"), cwd=tmp_path, env=env)
    assert done.returncode == 1 and "is unreachable" in done.stderr and "nothing was created" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_the_runtime_never_claims_a_resume_that_did_not_happen(tmp_path):
    from tests.runtime_harness import RuntimeRun

    job = {**COMMAND_JOB, "command": {"run": f"TOY_STEP_SECONDS=0.01 {sys.executable} {REPO / 'tests/toy_trainer.py'}"},
           "job": {"name": "fresh"}, "training": {"steps": 3, "save_freq": 3},
           "checkpoint": {"store": str(tmp_path / "empty-store")}}
    done = RuntimeRun(tmp_path / "host", job, mode="auto")
    assert done.wait(60) == 0, done.output[-2000:]
    assert f"no checkpoint in {tmp_path / 'empty-store'}: starting at step 0" in done.output
    assert "resuming from step" not in done.output
