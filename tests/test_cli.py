"""The CLI as a user meets it: namespaces, help on every task, cold start, and `invoke logs` for a local run."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INVOKE = [str(REPO / ".venv/bin/invoke"), "-r", str(REPO)]


def run(*args, cwd=None):
    return subprocess.run(INVOKE + list(args), cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def test_list_shows_every_namespace_and_the_top_level_tasks():
    listed = run("--list").stdout
    for name in ("plan", "status", "cleanup", "logs"):
        assert f"\n  {name} " in listed
    for namespace in ("local", "runpod", "verda", "slurm", "chtc", "docker"):
        assert f"  {namespace}.train" in listed or f"  {namespace}.submit" in listed or f"  {namespace}.build" in listed


def test_each_cloud_says_in_its_own_words_what_its_verbs_show():
    """The help of HF Jobs' verbs promises no SSH and no synced step (it has neither); Verda's does."""
    listed = {name: " ".join(run(name, "--help").stdout.split()) for name in
              ("hfjobs.logs", "hfjobs.status", "verda.logs", "verda.status")}
    assert "SSH" not in listed["hfjobs.logs"] and "Jobs API" in listed["hfjobs.logs"]
    assert "synced step" not in listed["hfjobs.status"] and "stage" in listed["hfjobs.status"]
    assert "over SSH" in listed["verda.logs"] and "synced step" in listed["verda.status"]


def test_every_task_has_help_and_every_launch_takes_config():
    """Every task of `invoke --list` has a docstring and its launch flags; `--help` shows it also for a task that
    takes a positional argument (Invoke gave `--help` to the argument: `invoke logs --help` looked for a run)."""
    import json

    import tasks

    listed = json.loads(run("--list", "--list-format", "json").stdout)
    names = [f"{c['name']}.{t['name']}" for c in listed["collections"] for t in c["tasks"]] + \
        [t["name"] for t in listed["tasks"]]
    assert len(names) > 30
    for name in names:
        task = tasks.namespace[name]
        assert (task.__doc__ or "").strip(), name
        if name.split(".")[-1] in ("train", "resume", "submit", "render", "plan"):
            assert any("config" in a.names for a in task.get_arguments()), name
    positional = [n for n in names if any(a.positional for a in tasks.namespace[n].get_arguments())]
    assert {"logs", "stop", "fetch", "local.logs"} <= set(positional)
    for name in positional:
        help_text = run(name, "--help").stdout
        assert "Docstring:\n  " + tasks.namespace[name].__doc__.strip().split()[0] in help_text, (name, help_text)


def test_import_of_tasks_pulls_no_sdk():
    probe = ("import sys, tasks; heavy = [m for m in ('runpod', 'verda', 'huggingface_hub', 'fabric', 'paramiko', 'pydantic', "
             "'jinja2', 'htcondor2') if m in sys.modules]; print(heavy)")
    out = subprocess.run([str(REPO / ".venv/bin/python"), "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_logs_of_a_local_run(tmp_path):
    (tmp_path / "runs/r1").mkdir(parents=True)
    (tmp_path / "runs/r1/runtime.log").write_text("[trainyard] synced checkpoint step 7\n")
    result = run("logs", "--run-id", "r1", cwd=tmp_path)
    assert result.returncode == 0 and "synced checkpoint step 7" in result.stdout
    missing = run("logs", "--run-id", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "no local run 'nope'" in missing.stderr


def test_the_secrets_file_is_a_setting_of_every_task(tmp_path):
    """`--env-file` (or Invoke's configuration: INVOKE_TRAINYARD_ENV_FILE, ~/.invoke.yaml) is read once per task
    and reaches everything below it; `invoke plan` used to read ./.env whatever was asked."""
    config = tmp_path / "spot.yaml"
    config.write_text("job: {name: spot}\nframework: command\ncommand: {run: python t.py}\n"
                      "resources: {spot: true, gpu: H100}\n")
    (tmp_path / "lab.env").write_text("HF_TOKEN=hf_" + "e" * 34 + "\n")
    env = {**os.environ, "HOME": str(tmp_path), "HF_TOKEN": "", "RUNPOD_API_KEY": "", "VERDA_CLIENT_ID": ""}
    plan = INVOKE + ["plan", "--config", str(config), "--backend", "verda", "--offline"]

    def go(*extra, **more_env):
        return subprocess.run(plan + list(extra), cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**env, **more_env})

    refused = go()  # no token anywhere: a spot run's default store cannot be made
    assert refused.returncode == 2 and "checkpoint.store: unset" in refused.stderr
    for done in (go("--env-file", "lab.env"), go(INVOKE_TRAINYARD_ENV_FILE="lab.env")):
        assert done.returncode == 0, done.stderr
        assert "checkpoints: hf://<HF_TOKEN's user>/spot-checkpoints" in done.stdout
    (tmp_path / ".invoke.yaml").write_text("trainyard:\n  env_file: lab.env\n")  # the user's Invoke configuration
    assert go().returncode == 0


def test_every_backend_binds_to_the_contract_and_runs_are_found_by_id(tmp_path, monkeypatch):
    """helpers/backends/base.py: each backend module declares itself and its six verbs bind to the declared
    signatures (names, kinds, defaults), and `find_run` (what `invoke logs|stop|fetch RUN` dispatch on) finds a
    cloud run in the ledger, a SLURM job by its record, a CHTC run folder, else this machine."""
    from helpers.backends.base import Descriptor, RunHandle, backend, drift, find_run
    from helpers.config import BACKENDS
    from helpers.workspace import opened

    for name in BACKENDS:
        module = backend(name)  # binds before it returns
        assert drift(module) == [] and isinstance(module.DESCRIPTOR, Descriptor) and module.DESCRIPTOR.name == name
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRAINYARD_LEDGER", raising=False)
    with opened(env_file=None, runs_dir=tmp_path / "runs") as workspace:
        workspace.ledger.record("verda", "ty-cloudy-abc123", "running", run_id="cloudy", instance_id="i-1", created=1.0)
        (tmp_path / "runs/slurmy").mkdir(parents=True)
        (tmp_path / "runs/slurmy/slurm.json").write_text('{"job_id": 7, "run_id": "slurmy"}')
        (tmp_path / "runs/chtc/pi05/condory").mkdir(parents=True)
        (tmp_path / "runs/chtc/pi05/condory/train.sub").write_text("queue\n")
        assert find_run("cloudy") == RunHandle("verda", "cloudy")
        assert find_run("slurmy") == RunHandle("slurm", "slurmy")
        assert find_run("condory") == RunHandle("chtc", "condory")
        assert find_run("here") == RunHandle("local", "here")


def test_a_backend_whose_verb_drifts_is_refused_before_dispatch(monkeypatch):
    """The router binds every verb against the contract: a `logs(handle, follow_lines)` (the drift of before),
    a missing default or a missing verb stops `backend()` with the backend and the verb named."""
    import importlib

    import pytest

    from helpers.backends import base

    module = importlib.import_module(base.module_of("hfjobs"))
    monkeypatch.setattr(module, "_contract_checked", False, raising=False)
    monkeypatch.setattr(module, "logs", lambda handle, follow_lines=False: None)
    with pytest.raises(TypeError, match=r"backend hfjobs .* logs\(handle, follow_lines=False\) is not logs"):
        base.backend("hfjobs")
    monkeypatch.setattr(module, "logs", lambda handle, follow: None)  # no default
    assert any(p.startswith("logs(") for p in base.drift(module))
    monkeypatch.delattr(module, "logs")
    assert "no logs()" in base.drift(module)
    monkeypatch.setattr(module, "launch", lambda job, host_secrets, mode="auto": 0)  # the old launch
    assert any(p.startswith("launch(") for p in base.drift(module))


def test_stop_and_fetch_of_a_local_run_through_the_top_level_tasks(tmp_path):
    run_dir = tmp_path / "runs/r2"
    run_dir.mkdir(parents=True)
    (run_dir / "runtime.log").write_text("[trainyard] synced checkpoint step 3\n")
    (run_dir / "job.json").write_text('{"derived": {"output_dir": "outputs/train/r2"}}')
    (tmp_path / "outputs/train/r2").mkdir(parents=True)
    (tmp_path / "outputs/train/r2/model.bin").write_text("w")
    fetched = run("fetch", "r2", "--dest", str(tmp_path / "copy"), cwd=tmp_path)
    assert fetched.returncode == 0 and "outputs of run r2" in fetched.stdout, fetched.stderr
    assert (tmp_path / "copy/model.bin").read_text() == "w"
    stopped = run("stop", "r2", cwd=tmp_path)  # no runtime.pid: nothing running, nothing to do
    assert stopped.returncode == 0, stopped.stderr
    missing = run("fetch", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "no local run 'nope'" in missing.stderr
