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


def test_every_task_has_help_and_every_launch_takes_config():
    names = [line.split()[0] for line in run("--list").stdout.splitlines()[2:] if line.startswith("  ") and line.split()]
    names = [n for n in names if not n.startswith("(")]
    assert len(names) > 30
    for name in names:
        help_text = run(name, "--help").stdout
        assert "Docstring:\n  none" not in help_text, name
        if name.split(".")[-1] in ("train", "resume", "submit", "render", "plan"):
            assert "--config" in help_text, name


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
