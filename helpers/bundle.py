"""What a backend ships to the GPU host: the runtime as one zip file, and the job document.

The bundle holds only the runtime and the two stdlib modules it shares with the tool (errors, secrets),
so the host needs neither this repository nor the tool's own environment.
"""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from pathlib import Path

from helpers.config import JobConfig

PACKAGE = Path(__file__).resolve().parent
BUNDLE_NAME = "trainyard_runtime.pyz"
SHARED_MODULES = ("__init__.py", "errors.py", "secrets.py")


def build_bundle(dest_dir: Path) -> Path:
    """Write trainyard_runtime.pyz into dest_dir; deterministic content, so it can be compared or cached."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / BUNDLE_NAME
    files = [PACKAGE / name for name in SHARED_MODULES] + sorted((PACKAGE / "runtime").glob("*.py"))
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(zipfile.ZipInfo("__main__.py", (2020, 1, 1, 0, 0, 0)), "import sys\nfrom helpers.runtime.run import main\nsys.exit(main())\n")
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(PACKAGE.parent).as_posix(), (2020, 1, 1, 0, 0, 0))
            bundle.writestr(info, path.read_bytes())
    return target


def job_document(job: JobConfig, machine: dict, price_per_hour: float | None = None, started: float | None = None) -> dict:
    """The JSON the runtime reads: the validated config, derived values, and how its machine ends."""
    started = time.time() if started is None else started
    limits = [job.time_limit_seconds]
    if job.limits.budget_usd and price_per_hour:
        limits.append(job.limits.budget_usd / price_per_hour * 3600)
    limits = [s for s in limits if s]
    return {
        "config": job.model_dump(mode="json"),
        "derived": {
            "run_id": job.run_id,
            "output_dir": job.output_dir,
            "store": job.store,
            "deadline_epoch": started + min(limits) if limits else None,
            "price_per_hour": price_per_hour,
        },
        "machine": machine,
    }


def write_job(dest_dir: Path, document: dict) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / "job.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def stage_run(job: JobConfig, machine: dict, host_secrets: dict[str, str], price_per_hour: float | None = None) -> Path:
    """Everything the host needs, in <runs_dir>/<run_id>/ (the workspace's): the bundle, job.json, and .env (mode
    0600) with only the secrets the job uses. Backends upload this folder as it is; the local backend runs it in place."""
    from helpers.workspace import current

    run_dir = current().runs_dir / job.run_id
    build_bundle(run_dir)
    write_job(run_dir, job_document(job, machine, price_per_hour))
    write_dotenv(run_dir, host_secrets)
    return run_dir


def write_dotenv(run_dir: Path, secrets: dict[str, str]) -> Path:
    """run_dir/.env, mode 0600 before anything is written to it: the secrets the host gets (the runtime reads it)."""
    dotenv = run_dir / ".env"
    dotenv.touch(mode=0o600)
    dotenv.chmod(0o600)
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
    return dotenv


def outputs_here(run_dir: Path, base: Path, dest: str | Path | None, what: str) -> Path:
    """A run's output folder on this filesystem (local runs, SLURM's shared one), from its job.json; copied to
    `dest` when asked."""
    import json
    import shutil

    from helpers.console import say

    out = base / json.loads((run_dir / "job.json").read_text())["derived"]["output_dir"]
    if dest:
        shutil.copytree(out, dest, symlinks=True, dirs_exist_ok=True)
        out = Path(dest)
    say(f"outputs of {what}: {out}/")
    return out


def render_commands(job: JobConfig, gpus: int, bin_dir: str = "$TRAINER_ENV/bin") -> list[str]:
    """The exact command line of each run, as the runtime will start it (fresh, not resuming)."""
    import shlex

    from helpers.runtime.job import JobDoc
    from helpers.runtime.trainers import runs_of, trainer_for

    document = job_document(job, {"kind": "plan"})
    doc = JobDoc(document["config"], document["derived"], document["machine"])
    return [shlex.join(trainer_for(doc, run, Path(bin_dir), gpus).command(resume=False)) for run in runs_of(doc)]


BUNDLE_ENV = "TRAINYARD_BUNDLE"
BUNDLE_CHUNK = 32 * 1024  # characters of base64 per env var (Linux allows 128 KiB per environment string)


def bundle_env(run_dir: Path) -> dict[str, str]:
    """TRAINYARD_BUNDLE_<i>: trainyard_runtime.pyz + job.json, zipped, base64, in BUNDLE_CHUNK pieces."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in (BUNDLE_NAME, "job.json"):
            bundle.write(run_dir / name, name)
    text = base64.b64encode(buffer.getvalue()).decode()
    return {f"{BUNDLE_ENV}_{i}": text[start:start + BUNDLE_CHUNK] for i, start in enumerate(range(0, len(text), BUNDLE_CHUNK))}
