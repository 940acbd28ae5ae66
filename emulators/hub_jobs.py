"""Hugging Face Jobs, as the local Hub (emulators/hub_server.py) serves it to the real `huggingface_hub` client.

Routes (the paths and payloads `HfApi.run_job`, `inspect_job`, `list_jobs`, `cancel_job`, `fetch_job_logs` and
`list_jobs_hardware` send and parse in huggingface_hub 2.4.0 [SRC]):

    POST /api/jobs/<ns>                   create: {command, arguments, environment, secrets, flavor, timeoutSeconds,
                                          attempts, labels, dockerImage|spaceId} -> the job [SRC]
    GET  /api/jobs/<ns>                   list, filtered by `stage` and `label=key=value` query values [SRC]
    GET  /api/jobs/<ns>/<id>              the job: {id, createdAt, startedAt, finishedAt, dockerImage, command,
                                          environment, flavor, labels, status {stage, message}, owner, durations,
                                          retry} [SRC: JobInfo's fields]
    POST /api/jobs/<ns>/<id>/cancel       -> CANCELED [SRC]
    GET  /api/jobs/<ns>/<id>/logs         Server-Sent Events `data: {"data": line, "timestamp": ...}` while the job
                                          runs; the stream ends when it ends [SRC: _stream_sse_events]
    GET  /api/jobs/hardware               flavors and prices per minute [SRC fields; prices: HF's jobs pricing page
                                          as the issue quotes it [DOC]]

Behaviour: a job is a real process on this machine (the image is not pulled: there is no Docker engine [INF]),
started in a fresh folder per attempt (a new machine each time [INF]), with its `environment` and `secrets` as its
environment [DOC]; stages SCHEDULING -> RUNNING -> COMPLETED | ERROR | CANCELED [SRC: JobStage]; the server ends a
job at `timeoutSeconds` [DOC: "Max duration for the Job"] with stage ERROR [INF: the message]; a failed attempt
(non-zero exit, or an infrastructure failure injected with `fail(job_id)`) is run again while `attempts` last [DOC:
"Maximum number of attempts, including the initial run"]; what a retried job looks like in between is [INF].
Secrets are never sent back: a job shows their names only [INF: the docs say "encrypted"].
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
# flavor -> (pretty name, accelerator model, quantity, vram, USD per hour): the prices HF publishes (issue 19)
HARDWARE = {
    "cpu-basic": ("CPU Basic", None, 0, "", 0.0),
    "l4x1": ("1x Nvidia L4", "L4", 1, "24 GB", 0.80),
    "l40sx1": ("1x Nvidia L40S", "L40S", 1, "48 GB", 1.80),
    "a100-large": ("1x Nvidia A100 - large", "A100", 1, "80 GB", 2.50),
    "h200": ("1x Nvidia H200", "H200", 1, "141 GB", 5.00),
    "h200x8": ("8x Nvidia H200", "H200", 8, "1128 GB", 40.00),
}


def _stamp(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@dataclass
class Job:
    id: str
    namespace: str
    spec: dict
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    stage: str = "SCHEDULING"
    message: str | None = None
    attempt: int = 0
    lines: list[tuple[float, str]] = field(default_factory=list)
    process: subprocess.Popen | None = None
    ending: str | None = None  # why the current process is being ended: "cancel", "timeout", "infra"


class JobsService:
    """State and processes of the jobs; `HubServer.jobs`. `job_path`: the PATH jobs run with (the image's)."""

    def __init__(self, root: Path, job_path: str | None = None, schedule_s: float = 0.2):
        self.root = Path(root) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.job_path = job_path or os.environ.get("PATH", "/usr/bin:/bin")
        self.schedule_s = schedule_s
        self.jobs: dict[str, Job] = {}
        self.requests: list[dict] = []  # every create body as received (the canary tests read them)
        self.hub_env: dict[str, str] = {}  # a job on the real Hub talks to it; here to this local one [INF]
        self.refusals: list[tuple[int, str]] = []  # the next creates refused: (status, message) [INF: bodies]
        self.lost_answers = 0  # the next creates make the job but their answer never arrives (a dropped connection)
        self._lock = threading.RLock()

    # --- API ------------------------------------------------------------------------------------------
    def create(self, namespace: str, spec: dict) -> dict:
        job_id = hashlib.sha1(f"{namespace}{time.time_ns()}{len(self.jobs)}".encode()).hexdigest()[:24]
        with self._lock:
            self.requests.append(json.loads(json.dumps(spec)))
            job = self.jobs[job_id] = Job(job_id, namespace, spec)
        threading.Thread(target=self._run, args=(job,), daemon=True, name=f"job-{job_id}").start()
        return self.view(job)

    def get(self, namespace: str, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return job if job and job.namespace == namespace else None

    def listing(self, namespace: str, stages: list[str], labels: list[str]) -> list[dict]:
        wanted = dict(label.split("=", 1) for label in labels if "=" in label)
        return [self.view(j) for j in self.jobs.values() if j.namespace == namespace
                and (not stages or j.stage in stages)
                and all((j.spec.get("labels") or {}).get(k) == v for k, v in wanted.items())]

    def cancel(self, job: Job) -> None:
        self._end(job, "cancel")

    def view(self, job: Job) -> dict:
        spec, now = job.spec, time.time()
        running = (job.finished or now) - job.started if job.started else None
        return {
            "id": job.id, "createdAt": _stamp(job.created), "startedAt": _stamp(job.started),
            "finishedAt": _stamp(job.finished), "dockerImage": spec.get("dockerImage"), "spaceId": spec.get("spaceId"),
            "command": spec.get("command"), "arguments": spec.get("arguments") or [],
            "environment": spec.get("environment") or {}, "secrets": {k: None for k in spec.get("secrets") or {}},
            "flavor": spec.get("flavor"), "labels": spec.get("labels"),
            "status": {"stage": job.stage, "message": job.message},
            "owner": {"id": hashlib.sha1(job.namespace.encode()).hexdigest()[:24], "name": job.namespace, "type": "user"},
            "durations": {"scheduling_secs": int((job.started or now) - job.created),
                          "running_secs": int(running) if running is not None else None,
                          "total_secs": int((job.finished or now) - job.created)},
            "retry": max(0, int(spec.get("attempts") or 1) - 1),
        }

    @staticmethod
    def hardware() -> list[dict]:
        out = []
        for name, (pretty, model, count, vram, per_hour) in HARDWARE.items():
            micro = round(per_hour / 60 * 1e6)
            out.append({"name": name, "prettyName": pretty, "cpu": "8 vCPU", "ram": "32 GB", "ephemeralStorage": "100 GB",
                        "accelerator": ({"type": "gpu", "model": model, "quantity": str(count), "vram": vram,
                                         "manufacturer": "Nvidia"} if model else None),
                        "unitCostMicroUSD": micro, "unitCostUSD": micro / 1e6, "unitLabel": "minute"})
        return out

    # --- controls for tests ---------------------------------------------------------------------------
    def refuse_next_create(self, status: int = 402, message: str = "Payment Required: add a payment method") -> None:
        """The next create is refused (402 no credit, 403 a namespace the token may not use) [INF: the bodies]."""
        self.refusals.append((status, message))

    def lose_next_create_answer(self) -> None:
        """The next create makes its job, then the connection drops before the answer."""
        self.lost_answers += 1

    def fail(self, job_id: str) -> None:
        """An infrastructure failure now: the machine running the job goes away (its processes die)."""
        self._end(self.jobs[job_id], "infra")

    def wait(self, job_id: str, stage: str | tuple[str, ...], timeout: float = 60) -> Job:
        stages = (stage,) if isinstance(stage, str) else stage
        deadline = time.monotonic() + timeout
        while self.jobs[job_id].stage not in stages:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {self.jobs[job_id].stage}, not {stages}")
            time.sleep(0.05)
        return self.jobs[job_id]

    def stop(self) -> None:
        for job in list(self.jobs.values()):
            if job.stage not in TERMINAL:
                self._end(job, "cancel")

    # --- running --------------------------------------------------------------------------------------
    def _end(self, job: Job, why: str) -> None:
        with self._lock:
            if job.stage in TERMINAL:
                return
            job.ending = why
            process = job.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif why == "cancel":
            self._finish(job, "CANCELED", None)

    def _finish(self, job: Job, stage: str, message: str | None) -> None:
        with self._lock:
            job.stage, job.message, job.finished = stage, message, time.time()

    def _run(self, job: Job) -> None:
        attempts = max(1, int(job.spec.get("attempts") or 1))
        timeout = job.spec.get("timeoutSeconds")
        time.sleep(self.schedule_s)
        while True:
            with self._lock:
                if job.ending == "cancel":
                    self._finish(job, "CANCELED", None)
                    return
                job.attempt += 1
                job.ending = None
                job.stage, job.message = "RUNNING", None
                job.started = job.started or time.time()
                workdir = self.root / job.id / f"attempt-{job.attempt}"  # a new machine each attempt [INF]
                workdir.mkdir(parents=True, exist_ok=True)
                env = {"PATH": self.job_path, "HOME": str(workdir), "LANG": "C.UTF-8", **self.hub_env,
                       **{k: str(v) for k, v in (job.spec.get("environment") or {}).items()},
                       **{k: str(v) for k, v in (job.spec.get("secrets") or {}).items()}}
                job.process = subprocess.Popen([*job.spec["command"], *(job.spec.get("arguments") or [])], cwd=workdir,
                                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                               start_new_session=True)
            timer = None
            if timeout:
                left = float(timeout) - (time.time() - job.started)
                timer = threading.Timer(max(0.0, left), self._end, args=(job, "timeout"))
                timer.daemon = True
                timer.start()
            for raw in job.process.stdout:
                with self._lock:
                    job.lines.append((time.time(), raw.decode("utf-8", "replace").rstrip("\n")))
            code = job.process.wait()
            if timer:
                timer.cancel()
            why = job.ending
            if why == "cancel":
                return self._finish(job, "CANCELED", None)
            if why == "timeout":
                return self._finish(job, "ERROR", f"Job timeout after {int(timeout)}s")
            if code == 0 and why is None:
                return self._finish(job, "COMPLETED", None)
            reason = "infrastructure failure" if why == "infra" else f"exit code {code}"
            if job.attempt >= attempts:
                return self._finish(job, "ERROR", reason)
            time.sleep(self.schedule_s)
