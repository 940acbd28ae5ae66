"""The SLURM backend: one batch script per job, rendered from the config (slurm/job.sh.j2), and the verbs
plan / submit (= launch) / status / logs / cancel (= terminate) / wait.

Two renderings of the one template:
- standalone, `render(job, config_path=...)`: what `invoke slurm.render` prints and what is checked in as
  slurm/pi0_finetune.sh. Plain `sbatch slurm/<name>.sh` on the login node works: at every start the script stages
  runs/<run_id>/ itself from the config (`python -m helpers.backends.slurm_jobs stage CONFIG`, the checkout's Python).
- submitted, `render(job)`: `submit` stages runs/<run_id>/ first (CLI overrides included), in the submit directory
  (a shared filesystem), writes the script next to it and runs `sbatch` from there.

On SLURM the time limit is the scheduler's (`#SBATCH --time`, from `slurm.time`, else `limits.time_limit`): the job
document carries no deadline of its own, and the runtime learns of the end from the pre-timeout USR1, syncs and exits 3;
the script then requeues the job. Secrets reach the job only in runs/<run_id>/.env (0600): the environment `sbatch`
passes on (which slurmctld keeps in its state directory) has every secret-looking name removed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers import gpus as gpu_catalog, offers
from helpers.backends.base import Descriptor, LaunchOptions, RunHandle, host_secrets
from helpers.bundle import BUNDLE_NAME, render_commands, stage_run
from helpers.config import JobConfig, parse_duration, validate
from helpers.console import say
from helpers.errors import ConfigError, ProviderError, TrainyardError
from helpers.planning import Plan, plan_of
from helpers.secrets import SECRET_NAMES, redact
from helpers.workspace import current

TEMPLATE = Path(__file__).resolve().parents[2] / "slurm" / "job.sh.j2"
RECORD = "slurm.json"
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
    "DEADLINE", "SPECIAL_EXIT", "REVOKED",
})
# Environment names never handed to sbatch: the known secrets, and anything shaped like one.
SECRET_SUFFIXES = ("_TOKEN", "_API_KEY", "_SECRET", "_PASSWORD")
PLAIN_VALUE = re.compile(r"[A-Za-z0-9._:%/@,=+\-]+")


# --- what the job looks like on SLURM --------------------------------------------------------------

# A SLURM cluster's GPUs are site-specific; without better knowledge assume seed 002's `--constraint="a100|h100"`.
DEFAULT_GPUS = ("A100-SXM-80GB", "H100-SXM")
DESCRIPTOR = Descriptor(
    "slurm", noun="job", gpus=gpu_catalog.every, multinode=True,
    fallback_offers=lambda: offers.cluster_offers("slurm", [(key, 8) for key in DEFAULT_GPUS],
                                                  source="fallback seed 002 a100|h100"))

def gpu_count(job: JobConfig) -> int:
    """GPUs the job asks for: from `slurm.gres` (gpu:4, gpu:a100:4), else resources.gpu_count; `gres: ""` is none."""
    gres = job.slurm.gres
    if gres is None:
        return job.resources.gpu_count
    for item in gres.split(","):
        parts = item.strip().split(":")
        if parts[0] == "gpu":
            return int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return 0


def nodes(job: JobConfig) -> int:
    """`resources.nodes` (the config's key for every backend), else `slurm.nodes` (the seed's)."""
    if job.resources.nodes > 1 and "nodes" in job.slurm.model_fields_set and job.slurm.nodes != job.resources.nodes:
        raise ConfigError("slurm.nodes", f"says {job.slurm.nodes}, resources.nodes says {job.resources.nodes}",
                          "keep resources.nodes only")
    return job.resources.nodes if job.resources.nodes > 1 else job.slurm.nodes


def gres(job: JobConfig) -> str | None:
    if job.slurm.gres is None:
        return f"gpu:{job.resources.gpu_count}"
    return job.slurm.gres or None


def _clock(seconds: float) -> str:
    """Seconds (rounded up) as SLURM's [D-]HH:MM:SS."""
    days, rest = divmod(int(-(-seconds // 1)), 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock


def slurm_time(job: JobConfig) -> str:
    """`slurm.time` when set, else `limits.time_limit` in SLURM's D-HH:MM:SS, else the default (44:00:00)."""
    if "time" in job.slurm.model_fields_set or not job.time_limit_seconds:
        return job.slurm.time
    return _clock(job.time_limit_seconds)


def format_time(value: str) -> str:
    """A CLI duration ('2h', '90m', 3600, '1-00:00:00') as SLURM's time."""
    try:
        return _clock(parse_duration(value))
    except ValueError as exc:
        raise ConfigError("--time-limit", str(exc), "use seconds, '90m', '2h' or 'HH:MM:SS'") from None


def launcher_kind(job: JobConfig) -> str:
    """How the trainer's processes start: torchrun / torchrun_auto / accelerate_command (the script's
    $TRAINYARD_LAUNCHER in front of a `command` job), runtime_accelerate (the runtime, for LeRobot and Open R1) or none."""
    chosen, framework = job.slurm.launcher, job.framework
    if job.resources.nodes > 1 and chosen == "accelerate":
        raise ConfigError("slurm.launcher", "accelerate's per-node launch of a command job is not wired yet",
                          "use slurm.launcher: auto or torchrun (torchrun's c10d rendezvous spans the nodes)")
    if framework == "command":
        return {"torchrun": "torchrun", "auto": "torchrun_auto", "accelerate": "accelerate_command"}[chosen]
    if framework in ("lerobot", "open_r1"):
        if chosen == "torchrun":
            raise ConfigError("slurm.launcher", f"torchrun is for `command` jobs; the runtime starts {framework} with accelerate",
                              "use slurm.launcher: auto (or accelerate)")
        return "runtime_accelerate"
    if chosen != "auto":
        raise ConfigError("slurm.launcher", f"openpi runs as one process that uses every GPU, not under {chosen}",
                          "use slurm.launcher: auto")
    return "none"


LAUNCHER_NOTES = {
    "torchrun": "torchrun",
    "torchrun_auto": "none (one process; torchrun from 2 GPUs on)",
    "accelerate_command": "accelerate",
    "runtime_accelerate": "accelerate, started by the runtime with one process per GPU",
    "none": "none (one process)",
}


SHELL_WORDS = {"if", "for", "while", "until", "case", "select", "function", "time", "!", "[[", "{", "(", "exec", "export",
               "cd", "source", ".", "set", "eval", "trap", "ulimit", "umask", "alias", "declare", "local", "readonly"}


def behind_launcher(line: str) -> str:
    """A `command` job's command line started by $TRAINYARD_LAUNCHER (empty with one GPU, torchrun ... --no-python
    with more). A simple command (`python train.py --out $DIR`) is prefixed as it is; anything else (assignments,
    `if`, `;`, pipes, $(...)) runs as `bash -c '<line>'` behind the launcher, once per process."""
    if line.startswith("$TRAINYARD_LAUNCHER "):
        return line
    try:
        words = shlex.split(line)
    except ValueError:
        words = []
    simple = (words and not re.search(r"[;&|<>(){}`\n\\]", line) and re.fullmatch(r"[A-Za-z0-9_./+-]+", words[0])
              and words[0] not in SHELL_WORDS)
    return f"$TRAINYARD_LAUNCHER {line}" if simple else f"$TRAINYARD_LAUNCHER bash -c {shlex.quote(line)}"


def slurm_job(job: JobConfig) -> JobConfig:
    """The job as the runtime gets it on SLURM: no deadline of its own (SLURM's time limit and USR1 end it), a
    `command` job's command line behind $TRAINYARD_LAUNCHER, and accelerate on for `slurm.launcher: accelerate`."""
    kind = launcher_kind(job)
    data = job.model_dump(mode="json")
    data["limits"]["timeout"] = False
    if kind in ("torchrun", "torchrun_auto", "accelerate_command"):
        for key in ("run", "resume_run"):
            line = data["command"].get(key)
            if line:
                data["command"][key] = behind_launcher(line if isinstance(line, str) else shlex.join(line))
    if job.framework == "lerobot" and job.slurm.launcher == "accelerate" and job.accelerate.use is None:
        data["accelerate"]["use"] = True
    return validate(data, source="slurm")


def directive_value(key: str, value: object) -> str:
    text = str(value)
    if "\n" in text or '"' in text:
        raise ConfigError(f"slurm.{key.replace('-', '_')}", f"{text!r} cannot go into an #SBATCH line", "remove quotes and line breaks")
    return text if PLAIN_VALUE.fullmatch(text) else f'"{text}"'


def directives(job: JobConfig) -> list[str]:
    """The #SBATCH lines, in the seed's order; every one comes from `slurm.*` (or the defaults in configs/README.md)."""
    s = job.slurm
    pairs: list[tuple[str, object]] = [
        ("job-name", s.job_name or job.run_id), ("output", s.output), ("error", s.error), ("time", slurm_time(job)),
        ("nodes", nodes(job)), ("gres", gres(job)), ("constraint", s.constraint), ("ntasks-per-node", s.ntasks_per_node),
        ("cpus-per-task", s.cpus_per_task), ("mem", s.mem), ("account", s.account), ("partition", s.partition),
    ]
    lines = []
    for key, value in pairs:
        if value is not None and value != "":
            lines.append(f"#SBATCH --{key}={directive_value(key, value)}")
        elif key in ("account", "partition"):
            lines.append(f"##SBATCH --{key}=...   (set slurm.{key}; the cluster's default is used)")
    lines.append("#SBATCH --requeue" if s.requeue else "#SBATCH --no-requeue")
    if s.signal:
        lines.append(f"#SBATCH --signal={directive_value('signal', s.signal)}")
    lines.append("#SBATCH --open-mode=append")  # a requeued job appends to its output instead of starting it over
    for extra in s.extra_directives:
        extra = re.sub(r"^#SBATCH\s+", "", extra.strip())
        if "\n" in extra or not extra.startswith("-"):
            raise ConfigError("slurm.extra_directives", f"{extra!r} is not an sbatch option", "write e.g. '--qos=high'")
        lines.append(f"#SBATCH {extra}")
    return lines


def log_dirs(job: JobConfig) -> list[str]:
    """Folders of the output files; SLURM does not create them (and fails the job silently if they are missing)."""
    found = []
    for path in (job.slurm.output, job.slurm.error):
        parent = os.path.dirname(path)
        if parent and "%" not in parent and parent not in found:
            found.append(parent)
    return found


def _double_quoted(text: str) -> str:
    """Text for inside "...": $VARS still expand on the node (the seed's ${OVERLAY_EXT3}), nothing else does."""
    return re.sub(r'(["\\`])', r"\\\1", str(text))


def render(job: JobConfig, config_path: str | None = None, script_path: str | None = None,
           run_dir: str | os.PathLike | None = None) -> str:
    """The batch script. With `config_path`: the standalone form that stages itself at every start (checked in as
    slurm/<name>.sh); without: the form `submit` writes next to a run folder it has staged."""
    import jinja2

    kind = launcher_kind(job)
    s = job.slurm
    overlay = s.overlay
    if overlay and not re.search(r":(ro|rw)$", overlay):
        overlay += ":ro"
    run_dir = run_dir if run_dir is not None else current().runs_dir / job.run_id
    shown_run_dir = os.path.relpath(run_dir) if not os.path.relpath(run_dir).startswith("..") else os.path.abspath(run_dir)
    static = config_path is not None
    script_path = script_path or f"slurm/{job.run_id}.sh"
    origin = (f"rendered from {config_path} by\n#   invoke slurm.render --config {config_path} --output {script_path}"
              if static else f"staged in {shown_run_dir}/ and submitted by `invoke slurm.submit`\n"
              "# from the directory that holds runs/ (a shared filesystem: the job runs there)")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.filters["dq"] = _double_quoted
    return env.get_template(TEMPLATE.name).render(
        directives=directives(job), run_id=job.run_id, framework=job.framework, origin=origin, static=static,
        config_path=config_path, script_path=script_path, log_dirs=log_dirs(job) or ["."], run_dir=shown_run_dir,
        set_path=s.set_path, container=s.container, overlay=overlay, requeue=s.requeue, signal=s.signal,
        launcher_kind=kind, launcher_note=LAUNCHER_NOTES[kind], nodes=job.resources.nodes,
    )


# --- verbs --------------------------------------------------------------------------------------------

def plan(job: JobConfig, options: LaunchOptions = LaunchOptions()) -> Plan:
    """What `submit` would do; no network call (so `offline` changes nothing)."""
    gpus = gpu_count(job)
    s = job.slurm
    name = s.constraint or (job.resources.gpu if isinstance(job.resources.gpu, str) else None) or "GPU"
    warnings = []
    if s.nodes > 1:
        warnings.append(f"slurm.nodes is {s.nodes}: the batch script (and so the runtime) runs on the first node only; "
                        "multi-node training is not supported (as in the seed)")
    why = ", ".join(filter(None, [
        f"sbatch: gres {gres(job) or 'none'}", s.constraint and f"constraint {s.constraint}", f"time {slurm_time(job)}",
        s.partition and f"partition {s.partition}", s.account and f"account {s.account}",
        "requeue on failure and before the time limit" if s.requeue else "no requeue",
        f"launcher: {LAUNCHER_NOTES[launcher_kind(job)]}",
    ]))
    run = f"runs/{job.run_id}"
    return plan_of(job, DESCRIPTOR, gpu={"id": name, "name": name, "memory_gb": None} if gpus else None,
                   gpu_count=gpus, why=why, commands=render_commands(slurm_job(job), gpus),
                   files=[f"{run}/{BUNDLE_NAME}", f"{run}/job.json", f"{run}/.env", f"{run}/{script_name(job)}"],
                   warnings=warnings)


def script_name(job: JobConfig) -> str:
    return f"{job.run_id}.sbatch"


def stage(job: JobConfig, host_secrets: dict[str, str]) -> Path:
    """runs/<run_id>/: the runtime bundle, job.json (the SLURM view of the job) and .env (0600)."""
    return stage_run(slurm_job(job), {"kind": "slurm"}, host_secrets, None)


def submit_environment(environ=None) -> dict[str, str]:
    """What sbatch may pass on to the job (and slurmctld stores): the environment minus anything secret."""
    environ = os.environ if environ is None else environ
    names = {n for accepted in SECRET_NAMES.values() for n in accepted}
    return {k: v for k, v in environ.items() if k not in names and not k.upper().endswith(SECRET_SUFFIXES)}


def _slurm(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if shutil.which(argv[0]) is None:
        raise ProviderError(f"{argv[0]} not found: run this on the cluster's login node (or load its slurm module)")
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=submit_environment())
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise ProviderError(f"{' '.join(argv[:2])} failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc


def submit(job: JobConfig, host_secrets: dict[str, str]) -> dict:
    """Stage runs/<run_id>/, write the script beside it, sbatch it from here; returns the job's record."""
    runs_dir = current().runs_dir
    script_text = render(job, run_dir=runs_dir / job.run_id)  # config problems surface before anything is written
    previous = read_record(runs_dir / job.run_id)
    if previous and (still := state(previous["job_id"])) not in FINAL_STATES and still is not None:
        raise ConfigError("job.run_id", f"slurm job {previous['job_id']} of run '{job.run_id}' is still {still}",
                          "stop it first (invoke slurm.stop --run-id ...) or pass another --run-id")
    run_dir = stage(job, host_secrets)
    script = run_dir / script_name(job)
    script.write_text(script_text)
    script.chmod(0o755)
    for folder in log_dirs(job):
        Path(folder).mkdir(parents=True, exist_ok=True)
    out = _slurm("sbatch", "--parsable", str(script)).stdout.strip()
    job_id = int(out.split(";")[0])
    name = job.slurm.job_name or job.run_id
    record = {
        "job_id": job_id, "run_id": job.run_id, "job_name": name, "script": str(script), "submitted": time.time(),
        "workdir": os.getcwd(), "run_dir": os.path.abspath(run_dir),
        "output": os.path.abspath(job.slurm.output.replace("%x", name).replace("%j", str(job_id))),
        "error": os.path.abspath(job.slurm.error.replace("%x", name).replace("%j", str(job_id))),
    }
    info = job_info(job_id, strict=False)
    if info:
        record["output"], record["error"] = info.get("StdOut") or record["output"], info.get("StdErr") or record["error"]
    record["earlier_jobs"] = ([previous["job_id"]] + previous.get("earlier_jobs", []))[:20] if previous else []
    (run_dir / RECORD).write_text(json.dumps(record, indent=2))
    return record


def launch(job: JobConfig, plan: Plan, options: LaunchOptions) -> int:
    """The contract's launch: submit and say where to follow it; the job runs (and requeues) without us (the runtime
    resumes by itself after a requeue: the mode is always auto)."""
    record = submit(job, host_secrets(job, DESCRIPTOR))
    say(f"submitted slurm job {record['job_id']} (run {job.run_id}, script {record['script']})")
    say(f"  output: {record['output']}")
    say(f"  follow: invoke slurm.logs --run-id {job.run_id} --follow   status: invoke slurm.status --run-id {job.run_id}")
    return 0


def read_record(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None


def find_record(run_id: str | None = None, job_id: int | None = None) -> dict:
    """The job to look at: --job-id, else the last one `submit` recorded for the run."""
    runs_dir = current().runs_dir
    if job_id is not None:
        found = read_record(runs_dir / run_id) if run_id else None
        return found if found and found["job_id"] == int(job_id) else {"job_id": int(job_id), "run_id": run_id}
    if not run_id:
        raise ConfigError("--config", "which job?", "pass --config (or --run-id, or --job-id)")
    record = read_record(runs_dir / run_id)
    if record is None:
        raise ConfigError("run_id", f"no SLURM job recorded for run '{run_id}' ({runs_dir / run_id / RECORD})",
                          "submit it with `invoke slurm.submit --config ...`, or pass --job-id")
    return record


def job_info(job_id: int, strict: bool = True) -> dict[str, str] | None:
    """`scontrol show job` as a dict; None once the controller has forgotten the job (MinJobAge). A controller that
    does not answer is an error (strict) or None."""
    proc = _slurm("scontrol", "-o", "show", "job", str(job_id), check=False)
    if proc.returncode != 0 and strict and "Invalid job id" not in proc.stderr:
        detail = proc.stderr.strip().splitlines()
        raise ProviderError(f"scontrol show job {job_id} failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    info: dict[str, str] = {}
    for key, value in re.findall(r"(\S+?)=(\S*)", proc.stdout.splitlines()[0]):
        info.setdefault(key, value)
    return info


def accounting(job_id: int) -> list[dict[str, str]]:
    """sacct rows for the job, when the cluster keeps accounting (else [])."""
    if shutil.which("sacct") is None:
        return []
    fields = ["JobID", "JobName", "State", "ExitCode", "Elapsed", "Start", "End"]
    proc = subprocess.run(["sacct", "-j", str(job_id), "-n", "-P", "-o", ",".join(fields)], capture_output=True,
                          text=True, timeout=60, env=submit_environment())
    if proc.returncode != 0:
        return []
    return [dict(zip(fields, line.split("|"))) for line in proc.stdout.splitlines() if line.strip()]


def state(job_id: int) -> str | None:
    info = job_info(job_id)
    if info is not None:
        return info.get("JobState")
    rows = accounting(job_id)
    return rows[0]["State"].split()[0] if rows else None


def record_of(handle) -> dict:
    """The SLURM job of a handle: its job id (native_id), else the one `submit` recorded last for the run."""
    return find_record(handle.run_id, int(handle.native_id) if handle.native_id is not None else None)


def run_dir_of(record: dict) -> Path:
    """The run folder of a recorded job (records written before it was kept name the submit directory only)."""
    return Path(record.get("run_dir") or Path(record.get("workdir") or ".") / "runs" / record["run_id"])


def status(handle: RunHandle | None = None) -> list[list]:
    """Print the job as SLURM sees it (scontrol, like squeue; sacct when the cluster keeps accounting) and the runtime's
    progress (runs/<run_id>/status.json on the shared filesystem); returns one row: job id, state, step, synced step."""
    if handle is None:
        raise ConfigError("--run-id", "which job?", "pass --config, --run-id or --job-id")
    record = record_of(handle)
    job_id = record["job_id"]
    info = job_info(job_id)
    sacct = accounting(job_id)
    if info is not None:
        waiting = f" ({info.get('Reason')})" if info.get("Reason") not in (None, "None") else ""
        say(f"slurm job {job_id} ({info.get('JobName')}): {info.get('JobState')}{waiting}, exit {info.get('ExitCode')}, "
            f"restarts {info.get('Restarts')}, run time {info.get('RunTime')} of {info.get('TimeLimit')}, "
            f"node {info.get('NodeList')}")
    for row in sacct:
        say(f"  sacct {row['JobID']} {row['JobName']}: {row['State']}, exit {row['ExitCode']}, elapsed {row['Elapsed']}, "
            f"{row['Start']} .. {row['End']}")
    if info is None and not sacct:
        say(f"slurm job {job_id}: unknown to the controller (ended long ago, and this cluster keeps no accounting)")
    runtime = {}
    if record.get("run_id"):
        try:
            runtime = json.loads((run_dir_of(record) / "status.json").read_text())
        except (OSError, ValueError):
            runtime = {}
    if runtime:
        say(f"runtime: {runtime.get('state')}, step {runtime.get('step')}/{runtime.get('total')}, loss {runtime.get('loss')}, "
            f"synced step {runtime.get('synced_step')}")
    if record.get("output"):
        say(f"output: {record['output']}")
    state_now = (info or {}).get("JobState") or (sacct[0]["State"] if sacct else "unknown")
    return [[job_id, record.get("run_id"), state_now, runtime.get("step"), runtime.get("synced_step")]]


def output_path(record: dict) -> Path | None:
    info = job_info(record["job_id"], strict=False)
    path = (info or {}).get("StdOut") or record.get("output")
    return Path(path) if path else None


LOG_POLL_S = 1.0  # logs --follow reads the output file this often


def logs(handle: RunHandle, follow: bool = False) -> None:
    """Print the job's output file; with follow, keep printing until the job has ended (through requeues)."""
    record = record_of(handle)
    path = output_path(record)
    if path is None:
        raise ConfigError("--job-id", f"no output file known for job {record['job_id']}", "see `invoke slurm.status`")
    if not follow:
        if not path.exists():
            say(f"{path} does not exist yet (job {record['job_id']}: {state(record['job_id']) or 'unknown'})")
            return
        sys.stdout.write(redact(path.read_text(errors="replace")))
        err = Path(record.get("error") or "")
        if record.get("error") and err != path and err.exists() and err.stat().st_size:
            say(f"--- {err}")
            sys.stdout.write(redact(err.read_text(errors="replace")))
        sys.stdout.flush()
        return
    offset, waiting_said = 0, False
    while True:
        current = state(record["job_id"])
        if path.exists():
            with path.open("r", errors="replace") as handle:
                handle.seek(offset)
                chunk = handle.read()
                offset = handle.tell()
            if chunk:
                sys.stdout.write(redact(chunk))
                sys.stdout.flush()
        elif not waiting_said:
            say(f"waiting for job {record['job_id']} to start ({current or 'unknown'}) ...")
            waiting_said = True
        if current is None or current in FINAL_STATES:
            if path.exists() and path.stat().st_size > offset:
                continue
            say(f"job {record['job_id']}: {current or 'gone'}")
            return
        time.sleep(LOG_POLL_S)


def fetch(handle: RunHandle, dest: str | Path | None = None) -> Path:
    """The job ran on the shared filesystem: its outputs are already here, in the submit directory."""
    from helpers.bundle import outputs_here

    record = record_of(handle)
    workdir = Path(record.get("workdir") or ".")
    return outputs_here(run_dir_of(record), workdir, dest, f"slurm job {record['job_id']}")


def stop(handle: RunHandle) -> None:
    """scancel: the batch shell and the runtime get SIGTERM; the runtime stops the trainer and syncs (within KillWait)."""
    record = record_of(handle)
    _slurm("scancel", str(record["job_id"]))
    say(f"cancelled slurm job {record['job_id']}: the runtime syncs its last checkpoint before SLURM ends the job")


# --- `python -m helpers.backends.slurm_jobs stage CONFIG`: what a standalone script runs at every start -----------

def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.backends.slurm_jobs",
                                     description="Stage runs/<run_id>/ for a SLURM job from its config (run by the job).")
    sub = parser.add_subparsers(dest="verb", required=True)
    stage_parser = sub.add_parser("stage", help="write runs/<run_id>/ (bundle, job.json, .env 0600) here")
    stage_parser.add_argument("config")
    stage_parser.add_argument("--env-file", default=".env")
    stage_parser.add_argument("--runs-dir", default="runs", help="where run folders go (trainyard.runs_dir)")
    args = parser.parse_args(argv)
    from helpers.config import load_job
    from helpers.secrets import check_secrets
    from helpers.workspace import opened

    try:
        job = load_job(args.config)
        with opened(args.env_file, args.runs_dir) as workspace:
            host_secrets = check_secrets(job, DESCRIPTOR, workspace.secrets)
            run_dir = stage(job, host_secrets)
    except TrainyardError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    print(f"trainyard: staged {run_dir}/ from {args.config} (secrets in .env: {', '.join(sorted(host_secrets)) or 'none'})",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
