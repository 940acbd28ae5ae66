"""The SLURM backend: batch scripts rendered from the config, run on a real one-node SLURM cluster.

The cluster (tests/slurm/cluster.sh, fixture `slurm_cluster`) is this machine, so a job's "GPU node" is here: jobs
train the `command` framework's toy trainer (tests/toy_trainer.py) on CPU. The runtime runs with --skip-setup
(TRAINYARD_SKIP_SETUP=1 in the job's set_path.sh, TRAINYARD_PYTHON = this venv's Python): no trainer venv is built,
because the node has no network and the toy needs nothing. Fake GPUs (gres gpu:4) set CUDA_VISIBLE_DEVICES.
Render / shellcheck tests need no cluster; the cluster tests are marked slow.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fixtures_slurm import SlurmCluster
from helpers.backends import slurm_jobs
from helpers.bundle import render_commands
from helpers.config import load_job, validate
from helpers.errors import ConfigError
from helpers.runtime.store import DirectoryStore

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TOY = REPO / "tests" / "toy_trainer.py"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"
CANARY_HF = "canaryHF-9f8e7d6c5b4a3210"
CANARY_WANDB = "canaryWB-0a1b2c3d4e5f6789"

SEED_DIRECTIVES = [
    "#SBATCH --job-name=pi0-bridge",
    "#SBATCH --output=log/slurm/train/%x.out",
    "#SBATCH --error=log/slurm/train/%x.err",
    "#SBATCH --time=44:00:00",
    "#SBATCH --nodes=1",
    "#SBATCH --gres=gpu:4",
    '#SBATCH --constraint="a100|h100"',
    "#SBATCH --ntasks-per-node=1",
    "#SBATCH --cpus-per-task=54",
    "#SBATCH --mem=440G",
    "#SBATCH --requeue",
    "#SBATCH --signal=B:USR1@90",
    "#SBATCH --open-mode=append",
]


def sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def toy_config(tmp_path: Path, name: str, command: str | None = None, steps: int = 30, save_freq: int = 10,
               nodes: int = 1, **slurm) -> Path:
    """A `command` job for the cluster, with a set_path.sh that points the job at this checkout's Python."""
    set_path = tmp_path / "set_path.sh"
    set_path.write_text(
        "# test paths: this checkout's Python runs the runtime (no trainer venv to build) and stages the run folder\n"
        f"export TRAINYARD_PYTHON={PYTHON} TRAINYARD_SKIP_SETUP=1 TRAINYARD_TOOL_PYTHON={PYTHON} PYTHONPATH={REPO}\n"
        f"export TOY_STEP_SECONDS=${{TOY_STEP_SECONDS:-0.01}}\n"
    )
    config = {
        "job": {"name": name},
        "framework": "command",
        "command": {"run": command or f"{PYTHON} {TOY}"},
        "training": {"steps": steps, "save_freq": save_freq},
        "slurm": {"set_path": "set_path.sh", "gres": "gpu:1", "time": "00:05:00", **slurm},
        **({"resources": {"nodes": nodes}} if nodes > 1 else {}),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def store_step(tmp_path: Path, run_id: str) -> int | None:
    return DirectoryStore(tmp_path / "runs" / run_id / "store").latest_step()


def shellcheck(path: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(SHELLCHECK), "-x", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- rendering (no cluster) -----------------------------------------------------------------------------

def test_checked_in_pi0_script_is_the_render_of_configs_pi0() -> None:
    job = load_job(REPO / "configs" / "pi0.yaml", environ={})
    fresh = slurm_jobs.render(job, config_path="configs/pi0.yaml", script_path="slurm/pi0_finetune.sh")
    checked_in = (REPO / "slurm" / "pi0_finetune.sh").read_text()
    assert checked_in == fresh, ("slurm/pi0_finetune.sh differs from configs/pi0.yaml: "
                                 "invoke slurm.render --config configs/pi0.yaml --output slurm/pi0_finetune.sh")
    assert os.access(REPO / "slurm" / "pi0_finetune.sh", os.X_OK)
    assert sbatch_lines(checked_in) == SEED_DIRECTIVES  # the seed's directives (account: commented until set)
    assert "##SBATCH --account=" in checked_in
    assert "CONFIG=configs/pi0.yaml" in checked_in and "--mode auto" in checked_in


def test_every_directive_comes_from_the_config() -> None:
    base = {"job": {"name": "x"}, "framework": "command", "command": {"run": "true"}}
    job = validate({**base, "slurm": {
        "job_name": "my-job", "output": "logs/%x-%j.out", "error": "logs/%x-%j.err", "time": "2-00:00:00", "nodes": 1,
        "gres": "gpu:h100:8", "constraint": "h100", "ntasks_per_node": 1, "cpus_per_task": 32, "mem": "500G",
        "account": "pr_109", "partition": "gpu", "requeue": False, "signal": "B:USR1@300",
        "extra_directives": ["--qos=high", "#SBATCH --exclusive"],
    }})
    assert sbatch_lines(slurm_jobs.render(job)) == [
        "#SBATCH --job-name=my-job", "#SBATCH --output=logs/%x-%j.out", "#SBATCH --error=logs/%x-%j.err",
        "#SBATCH --time=2-00:00:00", "#SBATCH --nodes=1", "#SBATCH --gres=gpu:h100:8", "#SBATCH --constraint=h100",
        "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=32", "#SBATCH --mem=500G", "#SBATCH --account=pr_109",
        "#SBATCH --partition=gpu", "#SBATCH --no-requeue", "#SBATCH --signal=B:USR1@300", "#SBATCH --open-mode=append",
        "#SBATCH --qos=high", "#SBATCH --exclusive",
    ]
    assert slurm_jobs.gpu_count(job) == 8
    # Defaults: gres from resources.gpu_count, time from limits.time_limit when slurm.time is not set, no gres with "".
    job = validate({**base, "resources": {"gpu_count": 2}, "limits": {"time_limit": "90m"}})
    lines = sbatch_lines(slurm_jobs.render(job))
    assert "#SBATCH --gres=gpu:2" in lines and "#SBATCH --time=01:30:00" in lines and "#SBATCH --job-name=x" in lines
    job = validate({**base, "slurm": {"gres": ""}, "limits": {"time_limit": "1-00:00:00"}})
    lines = sbatch_lines(slurm_jobs.render(job))
    assert not any("--gres" in line for line in lines) and "#SBATCH --time=1-00:00:00" in lines
    with pytest.raises(ConfigError, match="extra_directives"):
        slurm_jobs.render(validate({**base, "slurm": {"extra_directives": ["exclusive"]}}))


def test_launchers_and_the_gpu_count_in_the_rendered_commands() -> None:
    command = validate({"framework": "command", "command": {"run": "python train.py --steps $TRAINYARD_STEPS"},
                        "slurm": {"gres": "gpu:4"}})
    staged = slurm_jobs.slurm_job(command)
    assert staged.command.run == "$TRAINYARD_LAUNCHER python train.py --steps $TRAINYARD_STEPS"
    assert staged.time_limit_seconds is None  # SLURM's --time ends the job, with USR1 first
    # Anything but a simple command runs as `bash -c` behind the launcher (an empty launcher must not break it).
    assert slurm_jobs.behind_launcher("FOO=1 python x.py; echo done") == "$TRAINYARD_LAUNCHER bash -c 'FOO=1 python x.py; echo done'"
    for line in ("FOO=1 python x.py; echo done", "if true; then echo ok; fi", "python train.py --out $HOME"):
        for launcher in ("", "env"):
            proc = subprocess.run(["bash", "-c", slurm_jobs.behind_launcher(line)], capture_output=True, text=True,
                                  env={"PATH": os.environ["PATH"], "TRAINYARD_LAUNCHER": launcher, "HOME": "/h"})
            if not line.startswith("python"):
                assert proc.returncode == 0 and proc.stdout.strip() in ("done", "ok"), (line, launcher, proc.stderr)
    script = slurm_jobs.render(command)
    assert "--standalone --nnodes=1 --nproc_per_node=$NUM_GPU" in script and 'if [ "$NUM_GPU" -ge 2 ]' in script
    torchrun = slurm_jobs.render(validate({**command.model_dump(), "slurm": {"launcher": "torchrun"}}))
    assert 'TRAINYARD_LAUNCHER="${TORCHRUN:-torchrun} --standalone' in torchrun
    accelerate = slurm_jobs.render(validate({**command.model_dump(), "slurm": {"launcher": "accelerate"}}))
    assert "launch --num_machines=1" in accelerate
    # LeRobot: the runtime launches accelerate with one process per GPU it sees.
    pi0 = load_job(REPO / "configs" / "pi0.yaml", environ={})
    (line,) = slurm_jobs.plan(pi0).commands
    assert "accelerate' launch --multi_gpu --num_processes=4 --mixed_precision=bf16" in line and "lerobot-train" in line
    (line,) = render_commands(slurm_jobs.slurm_job(pi0), 2)
    assert "--num_processes=2" in line
    with pytest.raises(ConfigError, match="slurm.launcher"):
        slurm_jobs.render(validate({**pi0.model_dump(), "slurm": {"launcher": "torchrun"}}))


@pytest.mark.parametrize("variant", ["pi0", "container", "submitted", "torchrun", "accelerate", "no-requeue", "example"])
def test_scripts_pass_bash_n_and_shellcheck(variant: str, tmp_path: Path) -> None:
    if variant == "pi0":
        shellcheck(REPO / "slurm" / "pi0_finetune.sh")
        return
    if variant == "example":
        shellcheck(REPO / "slurm" / "set_path.example.sh")
        return
    sections = {
        "container": {"container": "/scratch/work/public/singularity/cuda12.1.1-cudnn8.9.0-devel-ubuntu22.04.2.sif",
                      "overlay": "${OVERLAY_EXT3}", "set_path": "set_path.sh"},
        "submitted": {"set_path": "$HOME/set path.sh"},
        "torchrun": {"launcher": "torchrun"},
        "accelerate": {"launcher": "accelerate"},
        "no-requeue": {"requeue": False, "signal": ""},
    }[variant]
    job = validate({"job": {"name": "v"}, "framework": "command", "command": {"run": "python train.py"}, "slurm": sections})
    script = tmp_path / "job.sh"
    script.write_text(slurm_jobs.render(job, config_path="configs/v.yaml") if variant == "container" else slurm_jobs.render(job))
    shellcheck(script)
    text = script.read_text()
    if variant == "container":
        assert 'exec --nv --overlay "${OVERLAY_EXT3}:ro" "/scratch/work/public/singularity/' in text
    if variant == "no-requeue":
        assert "scontrol requeue" not in text and "--signal" not in text


def test_submit_environment_drops_secrets() -> None:
    env = slurm_jobs.submit_environment({"PATH": "/bin", "HF_TOKEN": "x", "HUGGINGFACE_HUB_TOKEN": "x", "WANDB_API_KEY": "x",
                                         "GITHUB_TOKEN": "x", "MY_SECRET": "x", "SLURM_CONF": "/c"})
    assert env == {"PATH": "/bin", "SLURM_CONF": "/c"}


def test_bash_without_slurm_runs_the_job_here(tmp_path: Path) -> None:
    """`bash slurm/x.sh` on a workstation: no SLURM_JOB_ID, so no scheduler; it stages and trains right here."""
    config = toy_config(tmp_path, "local-toy", steps=20)
    script = tmp_path / "slurm" / "local-toy.sh"
    script.parent.mkdir()
    script.write_text(slurm_jobs.render(load_job(config, environ={}), config_path=config.name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No SLURM here (SLURM_JOB_ID unset)" in proc.stdout
    assert "MASTER_ADDR=127.0.0.1" in proc.stdout and "trainyard: staged runs/local-toy/" in proc.stdout
    assert store_step(tmp_path, "local-toy") == 20


# --- on the cluster --------------------------------------------------------------------------------------

@pytest.fixture
def on_cluster(slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Submit from tmp_path (the shared filesystem here), with the cluster's SLURM_CONF; cancel leftovers after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    yield slurm_cluster
    slurm_cluster.cancel_unfinished()


def submit(cluster: SlurmCluster, config: Path, secrets: dict[str, str] | None = None) -> dict:
    record = slurm_jobs.submit(load_job(config, environ={}), secrets or {})
    cluster.submitted.append(record["job_id"])
    return record


def output_of(record: dict) -> str:
    path = Path(record["output"])
    return path.read_text() if path.exists() else ""


@pytest.mark.slow
def test_checked_in_style_script_trains_on_the_cluster_and_syncs_the_final_checkpoint(on_cluster, tmp_path: Path) -> None:
    """`sbatch slurm/<name>.sh` as labs run it: the script stages runs/<run_id>/ itself, then the runtime trains."""
    config = toy_config(tmp_path, "toy-sbatch", steps=40)
    script = tmp_path / "slurm" / "toy-sbatch.sh"
    script.parent.mkdir()
    script.write_text(slurm_jobs.render(load_job(config, environ={}), config_path=config.name,
                                        script_path="slurm/toy-sbatch.sh"))
    (tmp_path / "log" / "slurm" / "train").mkdir(parents=True)
    job_id = on_cluster.sbatch(str(script), cwd=tmp_path)
    assert on_cluster.wait_for_job(job_id, timeout=90) == "COMPLETED", on_cluster.diagnostics()
    out = (tmp_path / "log" / "slurm" / "train" / "toy-sbatch.out").read_text()
    assert f"SLURM job {job_id} (toy-sbatch)" in out and "Job restart count: 0" in out
    assert "trainyard: staged runs/toy-sbatch/" in out and "synced checkpoint step 40" in out
    assert store_step(tmp_path, "toy-sbatch") == 40
    assert json.loads((tmp_path / "runs/toy-sbatch/status.json").read_text())["state"] == "done"
    assert stat.S_IMODE((tmp_path / "runs/toy-sbatch/.env").stat().st_mode) == 0o600


@pytest.mark.slow
def test_failed_job_requeues_itself_and_resumes_from_its_checkpoint(on_cluster, tmp_path: Path) -> None:
    # The first start trains 20 of 40 steps (checkpoints 10, 20) and then fails; the requeued start must go on from 20.
    command = (f'if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then TRAINYARD_STEPS=20 {PYTHON} {TOY}; '
               f'echo "failing on purpose"; exit 1; fi; {PYTHON} {TOY}')
    record = submit(on_cluster, toy_config(tmp_path, "toy-requeue", command=command, steps=40))
    assert on_cluster.wait_for_job(record["job_id"], timeout=120) == "COMPLETED", output_of(record)
    out = output_of(record)
    first, _, second = out.partition("Job restart count: 1")
    assert "failing on purpose" in first and "failed (exit 1); requeueing job" in first, out
    assert "resuming from step 20" in second and "resumed from step 20" in second, out
    assert "step:1 " not in second and "step:21 " in second  # not from zero
    assert store_step(tmp_path, "toy-requeue") == 40
    info = on_cluster.job_info(record["job_id"])
    assert info is not None and info["Restarts"] == "1"


@pytest.mark.slow
def test_two_gpus_reach_the_runtime_and_the_launchers(on_cluster, tmp_path: Path, lerobot_bin: Path) -> None:
    """gres gpu:2: CUDA_VISIBLE_DEVICES has two ids; a `command` job runs under real torchrun with two processes;
    the runtime counts two GPUs, and for LeRobot it would launch accelerate with two processes."""
    probe = tmp_path / "probe.py"
    probe.write_text("""
import json, os, sys
from pathlib import Path
sys.path.insert(0, "runs/toy-gpus/trainyard_runtime.pyz")  # the runtime's own code, from the bundle
from helpers.runtime.job import JobDoc
from helpers.runtime.trainers import runs_of, trainer_for
doc = JobDoc.load("runs/toy-gpus/job.json")
def say(line):  # one write per line: two ranks share the pipe
    os.write(1, (line + "\\n").encode())
say("probe rank=%s world=%s cvd=%s omp=%s num_gpu=%s gpus=%d" % (os.environ.get("RANK"), os.environ.get("WORLD_SIZE"),
    os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("OMP_NUM_THREADS"), os.environ.get("NUM_GPU"), doc.gpu_count()))
if os.environ.get("RANK") == "0":
    doc.config.update(framework="lerobot", policy=dict(doc.config["policy"], type="act"),
                      dataset=dict(doc.config["dataset"], repo_id="local/x"))
    trainer = trainer_for(doc, runs_of(doc)[0], Path("BIN"), doc.gpu_count())
    say("probe lerobot command: " + " ".join(trainer.command(resume=False)))
""")
    config = toy_config(tmp_path, "toy-gpus", command=f"{PYTHON} {probe}", gres="gpu:2")
    with (tmp_path / "set_path.sh").open("a") as handle:
        handle.write(f"export TORCHRUN={lerobot_bin / 'torchrun'}\n")
    record = submit(on_cluster, config)
    assert on_cluster.wait_for_job(record["job_id"], timeout=120) == "COMPLETED", output_of(record)
    out = output_of(record)
    assert "Launcher: " + str(lerobot_bin / "torchrun") + " --standalone --nnodes=1 --nproc_per_node=2" in out, out
    ranks = re.findall(r"^probe rank=(\d) world=(\S+) cvd=(\S+) omp=(\S+) num_gpu=(\S+) gpus=(\d+)$", out, re.M)
    assert sorted(r[0] for r in ranks) == ["0", "1"], out
    expected_omp = str(max(1, (os.cpu_count() or 1) // 2))  # the runtime's cores / GPUs
    for _, world, cvd, omp, num_gpu, gpus in ranks:
        ids = cvd.split(",")
        assert len(ids) == 2 and len(set(ids)) == 2 and set(ids) <= {"0", "1", "2", "3"}, cvd
        assert (world, omp, num_gpu, gpus) == ("2", expected_omp, "2", "2")
    assert re.search(r"^probe lerobot command: BIN/accelerate launch --multi_gpu --num_processes=2 --main_process_port=\d+ BIN/lerobot-train ",
                     out, re.M), out


@pytest.mark.slow
def test_usr1_before_the_time_limit_syncs_and_requeues(on_cluster, tmp_path: Path) -> None:
    """--time=1 with --signal=B:USR1@55: SLURM sends USR1 5-35 s after the start (it checks limits every 30 s). The
    first start is paced to need 60 s, so the signal comes first; the restart is fast and finishes."""
    command = (f'TOY_STEP_SECONDS=$([ "${{SLURM_RESTART_COUNT:-0}}" = 0 ] && echo 0.2 || echo 0.002) '
               f'{PYTHON} {TOY}')
    config = toy_config(tmp_path, "toy-usr1", command=command, steps=300, save_freq=5, time="00:01:00",
                        signal="B:USR1@55")
    started = time.monotonic()
    record = submit(on_cluster, config)
    assert on_cluster.wait_for_job(record["job_id"], timeout=150) == "COMPLETED", output_of(record)
    out = output_of(record)
    first, _, second = out.partition("Job restart count: 1")
    assert "got SIGUSR1" in first and "stopping the trainer: signal SIGUSR1" in first, out
    assert "runtime exited with code 3" in first and "stopped before the time limit; requeueing job" in first, out
    synced = [int(s) for s in re.findall(r"checkpoint in store \S+: step (\d+)", first)]
    assert synced and 0 < synced[-1] < 300, out
    assert f"resuming from step {synced[-1]}" in second, out
    assert store_step(tmp_path, "toy-usr1") == 300
    info = on_cluster.job_info(record["job_id"])
    assert info is not None and info["Restarts"] == "1" and info["TimeLimit"] == "00:01:00"
    print(f"USR1 path: {time.monotonic() - started:.0f} s from submit to COMPLETED")


@pytest.mark.slow
def test_invoke_submit_status_logs_cancel_and_no_secret_leaves_the_env_file(on_cluster, tmp_path: Path) -> None:
    command = f'echo "job sees HF_TOKEN of length ${{#HF_TOKEN}}"; {PYTHON} {TOY}'
    config = toy_config(tmp_path, "toy-cli", command=command, steps=100000, save_freq=20)
    (tmp_path / ".env").write_text(f"HF_TOKEN={CANARY_HF}\n")
    env = {**on_cluster.env, "WANDB_API_KEY": CANARY_WANDB, "TOY_STEP_SECONDS": "0.02"}

    def invoke(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(Path(PYTHON).parent / "invoke"), "--search-root", str(REPO), *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == code, proc.stdout + proc.stderr
        return proc

    dry = invoke("slurm.submit", "--config", config.name, "--dry-run")
    assert "#SBATCH --job-name=toy-cli" in dry.stdout and not (tmp_path / "runs" / "toy-cli").exists()
    proc = invoke("slurm.submit", "--config", config.name)
    m = re.search(r"submitted slurm job (\d+)", proc.stdout)
    assert m, proc.stdout
    job_id = int(m.group(1))
    on_cluster.submitted.append(job_id)
    assert f"output: {tmp_path}/log/slurm/train/toy-cli.out" in proc.stdout
    assert on_cluster.wait_for_state(job_id, {"RUNNING"}, timeout=60) == "RUNNING"
    out_file = tmp_path / "log" / "slurm" / "train" / "toy-cli.out"
    deadline = time.monotonic() + 60
    while "synced checkpoint step" not in (out_file.read_text() if out_file.exists() else ""):
        assert time.monotonic() < deadline, out_file.read_text() if out_file.exists() else "no output"
        time.sleep(0.5)

    # Secrets: only in runs/<run_id>/.env (0600), read by the job at run time.
    run_dir = tmp_path / "runs" / "toy-cli"
    assert stat.S_IMODE((run_dir / ".env").stat().st_mode) == 0o600
    assert CANARY_HF in (run_dir / ".env").read_text() and CANARY_WANDB in (run_dir / ".env").read_text()
    assert f"job sees HF_TOKEN of length {len(CANARY_HF)}" in out_file.read_text()
    shown = on_cluster.run("scontrol", "show", "job", "-dd", str(job_id)).stdout
    stored = [p for p in (on_cluster.state_dir / "state").rglob("*") if p.is_file()]
    assert any(f"job.{job_id}" in str(p) for p in stored)  # the environment and script slurmctld keeps
    for canary in (CANARY_HF, CANARY_WANDB):
        assert canary not in (run_dir / "toy-cli.sbatch").read_text() and canary not in shown
        assert not [p for p in stored if canary.encode() in p.read_bytes()], f"{canary} is in the controller's state"
        assert canary not in out_file.read_text() and canary not in (run_dir / "job.json").read_text()

    again = invoke("slurm.submit", "--config", config.name, code=2)  # one live job per run folder
    assert f"slurm job {job_id} of run 'toy-cli' is still RUNNING" in again.stderr
    status = invoke("slurm.status", "--config", config.name).stdout
    assert f"slurm job {job_id} (toy-cli): RUNNING" in status and "runtime: training" in status, status
    assert "step:1 " in invoke("slurm.logs", "--config", config.name).stdout
    cancelled_at = time.monotonic()
    assert f"cancelled slurm job {job_id}" in invoke("slurm.cancel", "--config", config.name).stdout
    assert on_cluster.wait_for_job(job_id, timeout=60) == "CANCELLED"
    assert time.monotonic() - cancelled_at < 30
    followed = invoke("slurm.logs", "--config", config.name, "--follow").stdout  # returns: the job has ended
    assert f"job {job_id}: CANCELLED" in followed
    time.sleep(3)
    info = on_cluster.job_info(job_id)
    assert info is not None and info["JobState"] == "CANCELLED" and info["Restarts"] == "0"  # not requeued
    assert store_step(tmp_path, "toy-cli") is not None


# --- several nodes: the two-node cluster (each node its own network and UTS namespace) -----------------------

TOY_DDP = REPO / "tests" / "toy_ddp_trainer.py"


@pytest.fixture
def on_two_nodes(slurm_multinode: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_CONF", str(slurm_multinode.conf))
    yield slurm_multinode
    slurm_multinode.cancel_unfinished()


def test_nodes_are_refused_where_a_job_runs_on_one_machine(tmp_path: Path) -> None:
    from helpers.backends.base import check_nodes, descriptor

    job = load_job(toy_config(tmp_path, "two", nodes=2), environ={})
    for cloud in ("runpod", "verda", "hfjobs", "local", "chtc"):
        with pytest.raises(ConfigError, match="multi-node runs go to SLURM") as refused:
            check_nodes(job, descriptor(cloud))
        assert refused.value.key == "resources.nodes"
    check_nodes(job, descriptor("slurm"))
    with pytest.raises(ConfigError, match="wired for `command` jobs so far"):
        validate({"framework": "lerobot", "dataset": {"repo_id": "a/b"}, "policy": {"type": "act"},
                  "resources": {"nodes": 2}})
    script = slurm_jobs.render(job)
    assert "#SBATCH --nodes=2" in sbatch_lines(script) and "#SBATCH --ntasks-per-node=1" in sbatch_lines(script)
    assert "NODE_LAUNCH=(srun --nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1" in script
    assert "torchrun} --nnodes=2 --rdzv_backend=c10d --rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT" in script


@pytest.mark.slow
def test_a_two_node_job_trains_as_one_group_loses_a_node_and_resumes_on_both(on_two_nodes, tmp_path: Path,
                                                                              lerobot_bin: Path) -> None:
    """resources.nodes: 2 on the two-node cluster: one runtime per node (srun), PyTorch's gloo processes on tynode1
    and tynode2 join one process group at the first node's address and train one model, node 0 syncs the
    checkpoints. Node 1's trainer dies at step 25 on the first start: the whole step ends (no half-job), the job
    requeues itself, node 0 restores the synced step 20 and both nodes resume from it and finish all 40 steps."""
    command = f"{lerobot_bin / 'python'} {TOY_DDP}"
    config = toy_config(tmp_path, "two-nodes", command=command, steps=40, nodes=2)
    with (tmp_path / "set_path.sh").open("a") as handle:
        handle.write("export TOY_STEP_SECONDS=0.05 TOY_DIE_AT_STEP=25 TOY_DIE_RANK=1\n")
    record = submit(on_two_nodes, config)
    assert on_two_nodes.wait_for_job(record["job_id"], timeout=240) == "COMPLETED", (output_of(record)[-4000:],
                                                                                     on_two_nodes.diagnostics())
    out = output_of(record)
    first, _, second = out.partition("Job restart count: 1")
    assert "MASTER_ADDR=tynode1" in first, out
    group = "group: [(0, 'tynode1', '10.77.0.11'), (1, 'tynode2', '10.77.0.12')]"
    assert f"rank 0 of 2 on tynode1; {group}" in first and f"rank 1 of 2 on tynode2; {group}" in first, out
    assert "rank 1 dies at step 25" in first and "requeueing job" in first, out
    assert "rank 0 resumed from step 20" in second and "rank 1 resumed from step 20" in second, out
    assert "node 0 starts from step 20" in (tmp_path / "runs/two-nodes/node-1/runtime.log").read_text()
    assert "rank 0 weights equal on every rank: True" in second and "rank 1 weights equal on every rank: True" in second
    assert store_step(tmp_path, "two-nodes") == 40
    assert not (tmp_path / "runs/two-nodes/node-1/store").exists()  # node 1 synced nothing
    left = on_two_nodes.run("squeue", "-h", "-o", "%i").stdout.split()
    assert str(record["job_id"]) not in left


def node_processes(node: int) -> list[str]:
    """Commands of the processes in node `node`'s network namespace, its slurmd left out."""
    pids = subprocess.run(["ip", "netns", "pids", f"tynode{node}"], capture_output=True, text=True).stdout.split()
    found = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if cmd and not cmd.startswith("slurmd"):
            found.append(cmd)
    return found


@pytest.mark.slow
def test_two_nodes_stop_before_the_time_limit_then_status_logs_and_cancel(on_two_nodes, tmp_path: Path,
                                                                          lerobot_bin: Path) -> None:
    """The pre-timeout USR1 reaches the runtime on every node (srun forwards it): both trainers stop, node 0 syncs the
    last checkpoint, the job requeues and resumes on both nodes; `invoke slurm.status`, `logs` and `cancel` work on
    the two-node job, and afterwards no process of it is left on either node."""
    config = toy_config(tmp_path, "two-cli", command=f"{lerobot_bin / 'python'} {TOY_DDP}", steps=100000, nodes=2)
    env = {**on_two_nodes.env, "TOY_STEP_SECONDS": "0.05"}

    def invoke(*args: str) -> str:
        proc = subprocess.run([str(Path(PYTHON).parent / "invoke"), "--search-root", str(REPO), *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    job_id = int(re.search(r"submitted slurm job (\d+)", invoke("slurm.submit", "--config", config.name))[1])
    on_two_nodes.submitted.append(job_id)
    out_file = tmp_path / "log" / "slurm" / "train" / "two-cli.out"

    def wait_for(text: str, after: int = 0) -> str:
        deadline = time.monotonic() + 90
        while text not in (out_file.read_text()[after:] if out_file.exists() else ""):
            assert time.monotonic() < deadline, (out_file.read_text() if out_file.exists() else "no output")
            time.sleep(0.3)
        return out_file.read_text()

    wait_for("synced checkpoint step 20")
    assert node_processes(1) and node_processes(2)  # a runtime and a trainer on each node
    on_two_nodes.run("scancel", "--signal=USR1", "--batch", str(job_id))
    first = wait_for("Job restart count: 1")
    stopped = re.findall(r"checkpoint in store \S+: step (\d+)", first)
    assert "stopping the trainer" in first and stopped, first
    resumed = wait_for("rank 1 resumed from step", after=len(first))
    assert f"rank 1 resumed from step {stopped[-1]}" in resumed and f"rank 0 resumed from step {stopped[-1]}" in resumed

    status = invoke("slurm.status", "--config", config.name)
    assert f"slurm job {job_id} (two-cli): RUNNING" in status, status
    assert "rank 0 of 2 on tynode1" in invoke("slurm.logs", "--config", config.name)
    assert f"cancelled slurm job {job_id}" in invoke("slurm.cancel", "--config", config.name)
    assert on_two_nodes.wait_for_job(job_id, timeout=60) == "CANCELLED"
    deadline = time.monotonic() + 30
    while (node_processes(1) or node_processes(2)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert node_processes(1) == [] and node_processes(2) == []
