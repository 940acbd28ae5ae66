"""A one-machine HTCondor pool for the suite: Debian 13's HTCondor 23.9 (`minihtcondor`) in the Debian root
(tests/debian_root.py), started and stopped by the tests, nothing under this machine's /etc.

The machine advertises GPUs the way CHTC's do — `GPUs_DeviceName`, `GPUs_Capability`, `GPUs_GlobalMemoryMb` and
a nested ad per device — through a GPU inventory script in place of condor_gpu_discovery (whose `-simulate` knows
no H100, H200 or L40S); it prints what condor_gpu_discovery -properties prints. Jobs are submitted as a non-root
user (the schedd refuses root: "Cannot allocate a cluster id") with a /staging/<netid> folder like CHTC's.

Settings this sandbox needs, or the starter fails with "Failed to unshare the mount namespace" (errno 22):
MOUNT_UNDER_SCRATCH empty and USE_PID_NAMESPACES false. The daemons listen on 127.0.0.1:9618 (minihtcondor's
default): one pool at a time.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.debian_root import DebianRoot

USER = "bucky"
CONFIG = "etc/condor/config.d/90-trainyard-pool"
INVENTORY = "opt/trainyard-pool/gpus.sh"


@dataclass(frozen=True)
class Gpu:
    device_name: str  # as nvidia-smi / the driver names it, e.g. "NVIDIA H100 80GB HBM3"
    capability: float
    memory_mb: int


H100 = Gpu("NVIDIA H100 80GB HBM3", 9.0, 81559)  # what an H100 SXM's driver reports (CHTC's GPU Lab)
H200 = Gpu("NVIDIA H200", 9.0, 143771)
L40S = Gpu("NVIDIA L40S", 8.9, 46068)


class HTCondorPool:
    def __init__(self, root: DebianRoot, gpu: Gpu, count: int = 2, cpus: int = 4, memory_mb: int = 16384,
                 job_environment: dict[str, str] | None = None):
        """job_environment: what every job on the machine gets (STARTER_JOB_ENVIRONMENT), as an image's ENV would."""
        self.root, self.gpu, self.count, self.cpus, self.memory_mb = root, gpu, count, cpus, memory_mb
        self.job_environment = job_environment or {}
        self.master: subprocess.Popen | None = None

    # --- set-up ------------------------------------------------------------------------------------------
    def _write_config(self) -> None:
        ids = [f"GPU-{i:08x}" for i in range(1, self.count + 1)]
        lines = [f'DetectedGPUs="{", ".join(ids)}"',
                 f'Common=[ Capability={self.gpu.capability}; DeviceName="{self.gpu.device_name}"; DriverVersion=12.80; '
                 f'ECCEnabled=true; GlobalMemoryMb={self.gpu.memory_mb}; MaxSupportedVersion=12080; ]']
        lines += [f'GPU_{i[4:]}=[ id="{i}"; DevicePciBusId="0000:{40 + n:02x}:00.0"; ]' for n, i in enumerate(ids)]
        script = self.root.path / INVENTORY
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("#!/bin/sh\n" + "".join(f"echo {shlex.quote(line)}\n" for line in lines))
        script.chmod(0o755)
        (self.root.path / CONFIG).write_text("\n".join([
            "# Trainyard's test pool (tests/htcondor_pool.py)",
            "MOUNT_UNDER_SCRATCH =",  # this sandbox cannot unshare the mount namespace for the starter
            "USE_PID_NAMESPACES = False",
            "use feature : GPUs",
            f"MACHINE_RESOURCE_INVENTORY_GPUs = /{INVENTORY}",
            f"NUM_CPUS = {self.cpus}",
            f"MEMORY = {self.memory_mb}",
            *([f'STARTER_JOB_ENVIRONMENT = "{" ".join(f"{k}={v}" for k, v in self.job_environment.items())}"']
              if self.job_environment else []),
            "STARTER_UPDATE_INTERVAL = 2",
            "SCHEDD_INTERVAL = 2",
            "NEGOTIATOR_INTERVAL = 2",
            "NEGOTIATOR_CYCLE_DELAY = 2",
            "",
        ]))

    def start(self, timeout: float = 90) -> "HTCondorPool":
        self._write_config()
        setup = (f"id {USER} >/dev/null 2>&1 || useradd -m {USER}; mkdir -p /staging/{USER} && "
                 f"chown {USER} /staging/{USER}; rm -rf /var/spool/condor/* /var/lib/condor/execute/* "
                 "/var/log/condor/*; mkdir -p /run/condor /run/lock/condor && "  # tmpfiles.d makes these at boot
                 "chown condor:condor /run/condor /run/lock/condor")
        done = self.root.run(["/bin/sh", "-c", setup])
        assert done.returncode == 0, done.stderr
        self.master = subprocess.Popen(self.root.command(["condor_master", "-f"]), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            gpus = self.run(["condor_status", "-af", "GPUs"]).stdout.split()
            queue = self.run(["condor_q", "-totals"], user=USER)
            if gpus == [str(self.count)] and queue.returncode == 0:
                return self
            time.sleep(1)
        self.stop()
        raise AssertionError(f"the pool did not come up in {timeout:.0f}s")

    def stop(self) -> None:
        if self.master is None:
            return
        self.master.terminate()  # condor_master -f shuts its daemons down on SIGTERM
        try:
            self.master.wait(60)
        except subprocess.TimeoutExpired:
            self.master.kill()
            self.master.wait()
        self.root.run(["/bin/sh", "-c", "pkill -9 -f '^condor_' || true"])
        self.master = None

    def __enter__(self) -> "HTCondorPool":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- using it ----------------------------------------------------------------------------------------
    def run(self, argv: list[str], *, user: str | None = None, cwd: str = "/", env: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """A command on the pool's one machine (its access point), as `user` (root when None)."""
        if user:
            argv = ["runuser", "-u", user, "--", "/usr/bin/env", *(f"{k}={v}" for k, v in (env or {}).items()), *argv]
            env = {"HOME": f"/home/{user}", "USER": user}
        return self.root.run(argv, cwd=cwd, env=env, timeout=timeout)

    def job(self, cluster: str, *attributes: str) -> list[str] | None:
        """The job's attributes from the queue (as root: every user's), or None once it left the queue."""
        done = self.run(["condor_q", "-allusers", cluster, "-af", *attributes])
        line = done.stdout.strip()
        return line.split() if line else None

    def wait_for(self, cluster: str, predicate, timeout: float = 120, every: float = 1.0) -> list[str] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            values = self.job(cluster, "JobStatus", "NumJobStarts")
            if predicate(values):
                return values
            time.sleep(every)
        state = self.job(cluster, "JobStatus", "NumJobStarts")
        held = self.run(["condor_q", "-allusers", cluster, "-af", "HoldReason"]).stdout.strip()
        raise AssertionError(f"job {cluster}: still {state} after {timeout}s" + (f" (held: {held})" if held != "undefined" else ""))

    def path(self, inside: str) -> Path:
        return self.root.path / inside.lstrip("/")
