"""The test SLURM cluster (tests/slurm/cluster.sh, fixture in tests/fixtures_slurm.py) runs real jobs.

These pin the cluster's behaviour that Trainyard's slurm backend relies on: output files, GPU gres,
feature constraints, requeue with SLURM_RESTART_COUNT, the pre-time-limit signal, and scancel.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from fixtures_slurm import CLUSTER_SH, SlurmCluster

pytestmark = pytest.mark.slow  # a real SLURM cluster (installed and started by the session fixture)


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/bash\n" + body.lstrip("\n"))
    path.chmod(0o755)
    return path


def test_batch_job_writes_its_output_file(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = write_script(tmp_path / "hello.sh", """
#SBATCH --job-name=trainyard-hello
echo "hello from job $SLURM_JOB_ID on $(hostname -s) in partition $SLURM_JOB_PARTITION"
""")
    job = slurm_cluster.sbatch("--output", str(tmp_path / "hello-%j.out"), str(script), cwd=tmp_path)
    assert slurm_cluster.wait_for_job(job, timeout=60) == "COMPLETED"
    out = (tmp_path / f"hello-{job}.out").read_text()
    assert out.strip() == f"hello from job {job} on {slurm_cluster.node} in partition debug"
    info = slurm_cluster.job_info(job)
    assert info is not None and info["ExitCode"] == "0:0" and info["JobName"] == "trainyard-hello"


def test_gres_gpu_two_sets_cuda_visible_devices(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "gpu.out"
    job = slurm_cluster.sbatch("--gres=gpu:2", "--output", str(out),
                               "--wrap", 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"', cwd=tmp_path)
    assert slurm_cluster.wait_for_job(job, timeout=60) == "COMPLETED"
    m = re.fullmatch(r"CUDA_VISIBLE_DEVICES=(\S*)", out.read_text().strip())
    assert m, out.read_text()
    ids = m.group(1).split(",")
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i in {"0", "1", "2", "3"} for i in ids), ids


def test_gres_more_gpus_than_the_node_has_is_refused(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    proc = slurm_cluster.run("sbatch", "--gres=gpu:5", "--wrap", "true", check=False, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Requested node configuration is not available" in proc.stderr


def test_constraint_or_of_features_schedules(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "constraint.out"
    job = slurm_cluster.sbatch('--constraint=a100|h100', "--output", str(out), "--wrap", "echo constrained-ok",
                               cwd=tmp_path)
    assert slurm_cluster.wait_for_job(job, timeout=60) == "COMPLETED"
    assert out.read_text().strip() == "constrained-ok"
    info = slurm_cluster.job_info(job)
    assert info is not None and info["Features"] == "a100|h100"
    # A feature the node lacks is refused at submit time, so the constraint is really checked.
    proc = slurm_cluster.run("sbatch", "--constraint=v100", "--wrap", "true", check=False, cwd=tmp_path)
    assert proc.returncode != 0 and "Invalid feature specification" in proc.stderr


def test_job_requeues_itself_and_sees_restart_count(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "requeue.out"
    script = write_script(tmp_path / "requeue.sh", f"""
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={out}
echo "run restart_count=${{SLURM_RESTART_COUNT:-0}}"
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then
    scontrol requeue "$SLURM_JOB_ID"
    sleep 60   # killed by the requeue
    echo "not requeued"
    exit 1
fi
echo "finished after restart"
""")
    started = time.monotonic()
    job = slurm_cluster.sbatch(str(script), cwd=tmp_path)
    # The requeued job waits AuthInfo=cred_expire (10 s here, 120 s by default) before it may start again.
    assert slurm_cluster.wait_for_job(job, timeout=90) == "COMPLETED", out.read_text()
    runs = [line for line in out.read_text().splitlines() if line.startswith(("run ", "finished", "not "))]
    assert runs == ["run restart_count=0", "run restart_count=1", "finished after restart"], out.read_text()
    info = slurm_cluster.job_info(job)
    assert info is not None and info["Restarts"] == "1" and info["Requeue"] == "1"
    assert time.monotonic() - started < 60


def test_signal_reaches_batch_shell_before_time_limit(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # --time=1 (one minute, the smallest limit) and B:USR1@55: the controller sends USR1 to the batch shell
    # (B:, not only to its steps) once fewer than 55 s are left. It checks time limits every 30 s, so the
    # signal comes 5-35 s after the start; the trap exits 0, so the job COMPLETES instead of TIMEOUT.
    out = tmp_path / "signal.out"
    script = write_script(tmp_path / "signal.sh", f"""
#SBATCH --time=1
#SBATCH --signal=B:USR1@55
#SBATCH --output={out}
start=$(date +%s)
trap 'echo "USR1 after $(( $(date +%s) - start ))s"; exit 0' USR1
echo "started"
for _ in $(seq 120); do sleep 1 & wait $!; done   # wait, not a bare sleep: bash runs traps between commands
echo "no signal"
""")
    job = slurm_cluster.sbatch(str(script), cwd=tmp_path)
    assert slurm_cluster.wait_for_job(job, timeout=90) == "COMPLETED", out.read_text()
    lines = out.read_text().splitlines()
    assert lines[0] == "started" and "no signal" not in lines, lines
    # (slurmstepd may add "failed signal 18 ... No such process" here: it follows USR1 with SIGCONT, and the
    # shell has already exited.)
    m = re.search(r"^USR1 after (\d+)s$", out.read_text(), re.M)
    assert m, lines
    assert int(m.group(1)) < 60, "USR1 came no earlier than the time limit"
    info = slurm_cluster.job_info(job)
    assert info is not None and info["TimeLimit"] == "00:01:00"


def test_scancel_stops_a_running_job(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    pidfile = tmp_path / "job.pid"
    out = tmp_path / "cancel.out"
    script = write_script(tmp_path / "long.sh", f"""
#SBATCH --output={out}
echo $$ > {pidfile}
sleep 300
echo "not cancelled"
""")
    job = slurm_cluster.sbatch(str(script), cwd=tmp_path)
    assert slurm_cluster.wait_for_state(job, {"RUNNING"}, timeout=60) == "RUNNING"
    deadline = time.monotonic() + 15
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the job never wrote its pid"
        time.sleep(0.2)
    shell_pid = int(pidfile.read_text())
    cancelled_at = time.monotonic()
    slurm_cluster.run("scancel", str(job))
    assert slurm_cluster.wait_for_job(job, timeout=60) == "CANCELLED"
    assert time.monotonic() - cancelled_at < 30
    assert "not cancelled" not in out.read_text()
    # The batch shell is gone (or a zombie on its way out), not left running.
    deadline = time.monotonic() + 10
    while _running(shell_pid):
        assert time.monotonic() < deadline, f"job shell {shell_pid} still running after scancel"
        time.sleep(0.2)


def test_start_again_is_a_quick_no_op(slurm_cluster: SlurmCluster) -> None:
    started = time.monotonic()
    proc = subprocess.run(["bash", str(CLUSTER_SH), "start"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 10
    status = subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(rf"^{re.escape(slurm_cluster.node)} (idle|mixed|allocated) ", status.stdout, re.M), status.stdout


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(autouse=True)
def _no_jobs_left_behind(slurm_cluster: SlurmCluster):
    """Each test cancels the jobs it submitted and left running, so they cannot hold up the next test."""
    yield
    slurm_cluster.cancel_unfinished()
