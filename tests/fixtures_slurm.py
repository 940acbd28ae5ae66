"""Real SLURM clusters for the suite: the session-scoped `slurm_cluster` (one node, this host) and `slurm_multinode`
(two nodes tynode1/tynode2, each in its own network and UTS namespace on a private bridge; tests/slurm/cluster.sh
with TRAINYARD_SLURM_NODES=2, its own state dir and ports, so both can run at once).

The fixture runs `tests/slurm/cluster.sh install` (apt-get, only if slurm is missing) and `start`, yields a
`SlurmCluster`, and runs `cluster.sh stop` when the session ends (set TRAINYARD_SLURM_KEEP=1 to leave it up for
poking at by hand: `eval "$(tests/slurm/cluster.sh env)"; sinfo`). Concurrent pytest sessions on one machine share
the cluster; the last one to finish stops it.

Nothing is written under /etc: every slurm command needs SLURM_CONF, which is in `slurm_cluster.env`
(os.environ plus SLURM_CONF). Pass that env to anything that shells out to sbatch/squeue/scontrol, e.g.
`monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))`, or use `slurm_cluster.run(...)`.

The cluster: node `hostname -s` with nproc CPUs, 4 fake GPUs (`--gres=gpu:N` sets CUDA_VISIBLE_DEVICES),
features a100,h100, partition `debug` (default, no time limit), JobRequeue=1, no accounting (so no sacct; the
final state of a job comes from `scontrol show job`, or from the jobcomp file once the controller forgot it).
Daemons run as root, so the fixture needs root (CI is root); otherwise it skips, saying why.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLUSTER_SH = Path(__file__).resolve().parent / "slurm" / "cluster.sh"

# Job states after which a job will not change any more (squeue/scontrol names).
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED",
})


@dataclass
class SlurmCluster:
    state_dir: Path
    conf: Path
    node: str
    env: dict[str, str] = field(repr=False)
    submitted: list[int] = field(default_factory=list, repr=False)

    @property
    def jobcomp_log(self) -> Path:
        return self.state_dir / "log" / "jobcomp.log"

    def run(self, *argv: str, check: bool = True, timeout: float = 30, cwd: str | os.PathLike | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run a slurm command (sbatch, squeue, scontrol, ...) against this cluster."""
        proc = subprocess.run(list(argv), env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}")
        return proc

    def sbatch(self, *args: str, cwd: str | os.PathLike | None = None) -> int:
        """`sbatch --parsable ARGS...`; returns the job id."""
        out = self.run("sbatch", "--parsable", *args, cwd=cwd).stdout.strip()
        job_id = int(out.split(";")[0])
        self.submitted.append(job_id)
        return job_id

    def cancel_unfinished(self) -> list[int]:
        """scancel the jobs this object submitted that have not ended (other sessions' jobs are left alone)."""
        live = [j for j in self.submitted if self.job_state(j) not in FINAL_STATES]
        if live:
            self.run("scancel", *map(str, live), check=False)
        self.submitted.clear()
        return live

    def job_info(self, job_id: int) -> dict[str, str] | None:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, ...), None once the controller forgot it."""
        proc = self.run("scontrol", "-o", "show", "job", str(job_id), check=False)
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                return None
            raise RuntimeError(f"scontrol show job {job_id}: {proc.stderr.strip()}")
        info: dict[str, str] = {}
        for key, value in re.findall(r"(\S+?)=(\S*)", proc.stdout.splitlines()[0]):
            info.setdefault(key, value)
        return info

    def jobcomp_state(self, job_id: int) -> str | None:
        """The job's final state from the jobcomp file (written when a job ends); stands in for sacct."""
        try:
            lines = self.jobcomp_log.read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            if re.search(rf"\bJobId={job_id}\b", line):
                m = re.search(r"\bJobState=(\S+)", line)
                return m.group(1) if m else None
        return None

    def job_state(self, job_id: int) -> str | None:
        """Current state: PENDING, RUNNING, COMPLETED, ... (None if the job is unknown)."""
        info = self.job_info(job_id)
        if info is None:
            return self.jobcomp_state(job_id)
        return info.get("JobState")

    def wait_for_state(self, job_id: int, states: set[str] | frozenset[str], timeout: float = 60,
                       poll: float = 0.25) -> str:
        """Wait until the job is in one of `states` (or in a final state); returns the state seen."""
        deadline = time.monotonic() + timeout
        state = None
        while True:
            state = self.job_state(job_id)
            if state in states or state in FINAL_STATES:
                return state
            if time.monotonic() >= deadline:
                raise TimeoutError(f"slurm job {job_id} still {state} after {timeout:.0f}s (wanted {sorted(states)})\n"
                                   + self.diagnostics())
            time.sleep(poll)

    def wait_for_job(self, job_id: int, timeout: float = 60, poll: float = 0.25) -> str:
        """Wait until the job has ended; returns its final state (COMPLETED, FAILED, CANCELLED, TIMEOUT, ...).

        A requeued job passes through PENDING again; that is not final. Raises TimeoutError with the
        controller's view and log tail if the job has not ended in `timeout` seconds.
        """
        return self.wait_for_state(job_id, FINAL_STATES, timeout=timeout, poll=poll)

    def diagnostics(self) -> str:
        parts = []
        for argv in (["squeue", "-o", "%i %T %r %M %j"], ["sinfo", "-N", "-o", "%N %T %E"]):
            proc = self.run(*argv, check=False)
            parts.append(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
        for path in [self.state_dir / "log" / "slurmctld.log", *sorted((self.state_dir / "log").glob("slurmd-*.log"))]:
            if path.exists():
                parts.append(f"--- tail {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)


def _cluster_sh(command: str, timeout: float, knobs: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CLUSTER_SH), command], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **knobs})


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The one-node cluster for this session."""
    with _session_cluster({}) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def slurm_multinode() -> Iterator[SlurmCluster]:
    """The two-node cluster for this session (nodes tynode1, tynode2 at 10.77.0.11/.12)."""
    base = os.environ.get("TRAINYARD_SLURM_DIR", "/tmp/trainyard-slurm")
    knobs = {"TRAINYARD_SLURM_DIR": f"{base}-2n", "TRAINYARD_SLURM_NODES": "2", "TRAINYARD_SLURM_CTLD_PORT": "6827",
             "TRAINYARD_SLURM_SLURMD_PORT": "6828"}
    with _session_cluster(knobs) as cluster:
        yield cluster


@contextlib.contextmanager
def _session_cluster(knobs: dict[str, str]) -> Iterator[SlurmCluster]:
    """A cluster for this session; shared with any other pytest session on this machine using the same state dir.

    Sessions register under <state dir>.users/<pid>; start and stop run under <state dir>.lock, and only the last
    live session stops the cluster, so two engineers' runs (or a run and a hand-started cluster) don't pull the
    cluster from under each other.
    """
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("slurm is not installed and there is no apt-get to install it with")
    if os.geteuid() != 0:
        pytest.skip("the test SLURM cluster runs its daemons as root (tests/slurm/cluster.sh); run the suite as root")
    # `cluster.sh env` prints `export SLURM_CONF=<state dir>/etc/slurm.conf` (the state dir honours TRAINYARD_SLURM_DIR).
    conf = Path(_cluster_sh("env", 30, knobs).stdout.strip().split("=", 1)[1])
    state_dir = conf.parent.parent
    users = Path(f"{state_dir}.users")
    lock = Path(f"{state_dir}.lock")
    me = users / str(os.getpid())
    with _locked(lock):
        for command, timeout in (("install", 900), ("start", 120)):
            proc = _cluster_sh(command, timeout, knobs)
            if proc.returncode != 0:
                pytest.fail(f"tests/slurm/cluster.sh {command} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}",
                            pytrace=False)
        users.mkdir(exist_ok=True)
        me.touch()
    env = dict(os.environ, SLURM_CONF=str(conf))
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    cluster = SlurmCluster(state_dir=state_dir, conf=conf, node=node, env=env)
    try:
        yield cluster
    finally:
        with _locked(lock):
            me.unlink(missing_ok=True)
            others = [p for p in users.iterdir() if p.name.isdigit() and _pid_alive(int(p.name))]
            for stale in set(users.iterdir()) - set(others):
                stale.unlink(missing_ok=True)
            if others:
                print(f"slurm cluster left running for pytest session(s) {', '.join(p.name for p in others)}")
            elif os.environ.get("TRAINYARD_SLURM_KEEP") != "1":
                proc = _cluster_sh("stop", 120, knobs)
                if proc.returncode != 0:
                    print(f"tests/slurm/cluster.sh stop failed ({proc.returncode}): {proc.stderr}")
