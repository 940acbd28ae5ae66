"""The CHTC backend: the UW–Madison GPU Lab through HTCondor (seed 003).

A job here is a docker-universe job (`chtc.universe`; `vanilla` runs on the execute machine's own Python, as in the
suite's HTCondor pool) that runs `chtc/train_wrapper.sh` in the training image; the wrapper runs the runtime bundle
on `job.json`. Both are transferred with the job from `runs/chtc/<config_name>/<exp_name>/`, which
`render` fills (bundle, job.json, wrapper, train.sub). Nothing costs money, so there is no ledger entry: the job
lives in HTCondor's queue (`status` is condor_q, `terminate` condor_rm).

Memory: the plan's estimate when it can size the job (a small ACT job is not sent to 80 GB cards); else the presets (GPU_FACTS §4, the seed's README): LoRA needs a 24 GB card and fits a `short` (12 h) job; a full fine-tune
needs an 80 GB card and a `long` (7 day) job. Explicit `chtc.*` keys win over the presets.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from helpers import gpus as gpu_catalog, offers
from helpers.backends.base import Descriptor, LaunchOptions, RunHandle, host_secrets
from helpers.bundle import BUNDLE_NAME, build_bundle, job_document, render_commands, write_dotenv, write_job
from helpers.console import say, warn
from helpers.errors import ConfigError, ProviderError
from helpers.planning import Plan, plan_of
from helpers.workspace import current

REPO = Path(__file__).resolve().parents[2]
CHTC_DIR = REPO / "chtc"
TEMPLATE = "train.sub.j2"
WRAPPER = "train_wrapper.sh"
SUBMITTED = "submitted.json"  # in the run folder: the HTCondor job id condor_submit gave it

# GPU Lab job classes (+GPUJobLength) and their longest run time.
JOB_LENGTH_HOURS = {"short": 12, "medium": 24, "long": 7 * 24}
# MB for gpus_minimum_memory. Full fine-tuning asks for an 80 GB card. 80000 and not 81920 (80 x 1024):
# HTCondor reports what the driver reports, and an "80GB" H100 reports 81559 MB, so 81920 would leave out every
# H100 in the pool and run only on H200s (tests/test_chtc.py checks both against an H100 slot's ClassAd).
LORA_MIN_MEMORY_MB = 24576
FULL_MIN_MEMORY_MB = 80000
DEFAULT_GPU_NAMES = ("H100", "H200")
# The runtime stops the trainer this long before the job class's limit, so the last checkpoint is synced and
# transferred back before HTCondor ends the job.
STOP_MARGIN_SECONDS = 30 * 60
PLACEHOLDER_PREFIXES = ("your", "<")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# The CHTC GPU Lab (GPU_FACTS.md §4, CHTC site _data/gpus.yaml of 2025-12-16): GPU -> GPUs per server. Free.
INVENTORY = (("H100-SXM", 8), ("H200-SXM", 8), ("L40S", 8), ("L40", 10), ("A100-SXM-80GB", 4), ("A100-SXM-40GB", 4),
             ("RTX-2080-TI", 8), ("P100-PCIE-16GB", 2))
INVENTORY_AS_OF = "2025-12-16"
DESCRIPTOR = Descriptor(
    "chtc", noun="job", gpus=lambda: gpu_catalog.having("chtc_device_name"),
    fallback_offers=lambda: offers.cluster_offers("chtc", INVENTORY, location="CHTC GPU Lab",
                                                  source=f"fallback {INVENTORY_AS_OF}"))

@dataclass
class Settings:
    """Every value the submit file gets, and why (for `plan`)."""

    config_name: str
    exp_name: str
    universe: str
    netid: str | None
    image: str | None
    gpu_names: list[str]
    gpu_keys: list[str]
    min_gpu_memory_gb: float
    requirements: str
    gpu_count: int
    request_cpus: int
    request_memory: str
    request_disk: str
    gpus_minimum_capability: float
    gpus_minimum_memory: int
    job_length: str
    staging_dir: str
    output_root: str
    time_limit_seconds: float
    run_dir: Path
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def submit_values(self) -> dict[str, object]:
        return {
            "docker_image": self.image, "request_gpus": self.gpu_count, "request_cpus": self.request_cpus,
            "request_memory": self.request_memory, "request_disk": self.request_disk,
            "gpus_minimum_capability": self.gpus_minimum_capability, "gpus_minimum_memory": self.gpus_minimum_memory,
            "Requirements": self.requirements, "+GPUJobLength": self.job_length,
        }


def _explicit(job, key: str) -> bool:
    return key in job.chtc.model_fields_set


def _names_and_key(job) -> tuple[list[str], str]:
    if job.chtc.gpu_names:
        return list(job.chtc.gpu_names), "chtc.gpu_names"
    if job.resources.gpu:
        names = job.resources.gpu if isinstance(job.resources.gpu, list) else [job.resources.gpu]
        return list(names), "resources.gpu"
    return list(DEFAULT_GPU_NAMES), "chtc.gpu_names"


def output_root(job) -> str:
    """The sandbox folder that holds the checkpoints: transferred back on exit and eviction."""
    if job.framework == "openpi":
        base, key = job.openpi.checkpoint_base_dir, "openpi.checkpoint_base_dir"
    else:
        base, key = job.output_dir, "job.output_dir"
    path = PurePosixPath(base)
    if path.is_absolute() or not path.parts or path.parts[0] in ("..", "."):
        raise ConfigError(key, f"'{base}' is not inside the job's sandbox", "use a relative path such as 'checkpoints'")
    return path.parts[0]


def _estimate_gb(job) -> float | None:
    """The plan's per-GPU estimate, offline (no parameter count known: None, and the method's preset applies)."""
    from helpers.planning import size_job

    try:
        sizing = size_job(job, offline=True, required=False)
    except ConfigError:
        return None
    return sizing.estimate.total_gb if sizing.estimate is not None else None


def settings(job, strict: bool = True) -> Settings:
    """What to ask HTCondor for: GPU names from the catalog, presets from model.method, explicit chtc.* keys win.
    A job that could never start raises (strict), or is a warning (for `plan`)."""
    from helpers import gpus

    notes: list[str] = []
    warnings: list[str] = []
    names, key = _names_and_key(job)
    resolved = [gpus.resolve(str(name), key) for name in names]
    usable = list(dict.fromkeys(g for g in resolved if g.chtc_device_name))
    dropped = [g.key for g in resolved if not g.chtc_device_name]
    if dropped:
        notes.append(f"not in the CHTC GPU Lab, left out: {', '.join(dropped)}")
    requirements = gpus.chtc_requirement(usable or resolved)  # raises a one-line error when none is in the pool

    lora = job.model.method in ("lora", "qlora")
    if job.chtc.gpus_minimum_memory is not None:
        min_memory = job.chtc.gpus_minimum_memory
    elif job.resources.min_vram_gb:
        min_memory = int(job.resources.min_vram_gb * 1024)
    elif (estimate := _estimate_gb(job)) is not None:  # the job's own need: a small one also matches smaller GPUs
        min_memory = math.ceil(estimate * 1e9 / 2**20)  # GB -> the MiB GPUs_GlobalMemoryMb counts in
        notes.append(f"gpus_minimum_memory {min_memory} MB: the memory estimate (~{estimate:.0f} GB per GPU)")
    else:
        min_memory = LORA_MIN_MEMORY_MB if lora else FULL_MIN_MEMORY_MB
        notes.append(f"{'LoRA' if lora else 'full fine-tune'} preset: gpus_minimum_memory {min_memory} MB")
    too_small = [g.key for g in usable if g.memory_gb * 1000 < min_memory]
    if usable and len(too_small) == len(usable):
        error = ConfigError("chtc.gpus_minimum_memory", f"none of {', '.join(too_small)} has {min_memory} MB, so the job "
                            "would never start", "name bigger GPUs, or set resources.min_vram_gb / chtc.gpus_minimum_memory")
        if strict:
            raise error
        warnings.append(str(error))
    elif too_small:
        notes.append(f"{', '.join(too_small)} named but below {min_memory} MB: they will never match")

    if _explicit(job, "gpus_minimum_capability"):
        capability = float(job.chtc.gpus_minimum_capability)
    else:  # the lowest of the named GPUs: 9.0 for H100/H200, 8.9 once L40S is allowed
        capability = min((float(g.compute_capability) for g in usable if g.compute_capability), default=9.0)

    time_limit = job.time_limit_seconds
    if job.chtc.job_length:
        length = job.chtc.job_length
        if time_limit and time_limit > JOB_LENGTH_HOURS[length] * 3600:
            notes.append(f"limits.time_limit is longer than a '{length}' job ({JOB_LENGTH_HOURS[length]} h): "
                         f"the run stops before {JOB_LENGTH_HOURS[length]} h")
    elif time_limit:  # the smallest class that holds the time limit: shorter classes get more GPUs sooner
        length = next((c for c, hours in JOB_LENGTH_HOURS.items() if hours * 3600 >= time_limit), "long")
        notes.append(f"job length '{length}' holds limits.time_limit" if JOB_LENGTH_HOURS[length] * 3600 >= time_limit
                     else "limits.time_limit is longer than the longest GPU Lab job (7 days): the run stops before")
    else:
        length = "short" if lora or job.model.method == "inference" else "long"
        notes.append(f"job length '{length}' ({JOB_LENGTH_HOURS[length]} h): {'LoRA' if lora else 'full fine-tune'} preset")
    hard_stop = JOB_LENGTH_HOURS[length] * 3600 - STOP_MARGIN_SECONDS
    stop_after = min(time_limit, hard_stop) if time_limit else hard_stop

    if job.framework == "openpi":
        config_name, exp_name = job.openpi.config_name, job.openpi.exp_name or job.run_id
    else:
        config_name, exp_name = job.framework, job.run_id
    for value, name in ((config_name, "openpi.config_name"), (exp_name, "openpi.exp_name")):
        if not SAFE_NAME.fullmatch(value):  # a submit variable, an argument and a folder name
            raise ConfigError(name, f"'{value}' has characters HTCondor arguments and paths cannot carry",
                              "use letters, digits, '.', '_' and '-'")
    image = job.chtc.image or job.docker.tag
    netid = job.chtc.netid
    if job.chtc.universe == "docker" and _placeholder(image):
        notes.append(f"chtc.image is {image or 'not set'}: set the image you pushed before submitting")
    if netid is not None and _placeholder(netid):
        notes.append(f"chtc.netid '{netid}' is a placeholder: set your NetID (or remove it: $USER on the access point)")
    return Settings(
        config_name=config_name, exp_name=exp_name, universe=job.chtc.universe, netid=netid, image=image,
        gpu_names=[g.name for g in usable], gpu_keys=[g.key for g in usable],
        min_gpu_memory_gb=min((g.memory_gb for g in usable), default=0.0),
        requirements=requirements, gpu_count=job.resources.gpu_count,
        request_cpus=job.chtc.request_cpus, request_memory=job.chtc.request_memory, request_disk=job.chtc.request_disk,
        gpus_minimum_capability=capability, gpus_minimum_memory=int(min_memory), job_length=length,
        staging_dir=job.chtc.staging_dir or "/staging/$(netid)/openpi", output_root=output_root(job),
        time_limit_seconds=stop_after, run_dir=current().runs_dir / "chtc" / config_name / exp_name, notes=notes,
        warnings=warnings,
    )


def _template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(CHTC_DIR)), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    return env.get_template(TEMPLATE)


def _capability(value: float) -> str:
    return str(float(value))  # 9.0, 8.9, 8.95: never rounded


def render_text(s: Settings, submit_path: str) -> str:
    """The submit file for these settings (a run folder that `render` prepares)."""
    return _template().render(
        static=False, title=f"Trainyard: {s.config_name}/{s.exp_name} on the CHTC GPU Lab "
                            f"(rendered by `invoke chtc.render`; edit the config, not this file)",
        submit_path=submit_path, config_name=s.config_name, exp_name=s.exp_name, universe=s.universe,
        netid=s.netid or "$ENV(USER)", image=s.image or "your-dockerhub-user/openpi_train:latest",
        run_dir=s.run_dir.as_posix(), staging_dir=s.staging_dir, executable="$(run_dir)/" + WRAPPER,
        output_root=s.output_root, gpu_count=s.gpu_count, request_cpus=s.request_cpus,
        request_memory=s.request_memory, request_disk=s.request_disk,
        gpus_minimum_capability=_capability(s.gpus_minimum_capability), gpus_minimum_memory=s.gpus_minimum_memory,
        requirements=s.requirements, job_length=s.job_length,
    )


def static_text() -> str:
    """chtc/train.sub, the ready file of the seed's flow (H100/H200, LoRA settings of configs/openpi_pi05_lora.yaml
    but for the GPU names). tests/test_chtc.py checks the file in the repository is exactly this."""
    from helpers import gpus

    return _template().render(
        static=True, title="CHTC GPU Lab submit file for openpi (seed 003). Generated from chtc/train.sub.j2 by "
                           "`invoke chtc.render --static`.",
        submit_path="chtc/train.sub", config_name="pi05_collab", exp_name="my_run", universe="docker",
        run_dir_note="The run folder (runtime bundle + job.json) comes from `invoke chtc.render --config <yaml> "
                     "--exp-name <exp>`.",
        netid="$ENV(USER)", image="your-dockerhub-user/openpi_train:latest",
        run_dir="runs/chtc/$(config_name)/$(exp_name)", staging_dir="/staging/$(netid)/openpi",
        executable="chtc/" + WRAPPER, output_root="checkpoints", gpu_count=1, request_cpus=8,
        request_memory="64GB", request_disk="200GB", gpus_minimum_capability="9.0",
        gpus_minimum_memory=LORA_MIN_MEMORY_MB, requirements=gpus.chtc_requirement([gpus.resolve(n) for n in DEFAULT_GPU_NAMES]),
        job_length="short",
    )


def job_for_host(job, s: Settings) -> dict:
    """job.json for the GPU Lab. The deadline is set by the wrapper when the job starts (a queue wait must not use
    up the time limit); the store stays in the sandbox unless the config names one (hf://...)."""
    host_job = job.model_copy(deep=True)
    if not job.checkpoint.store:
        # In the sandbox the directory store is only a second copy of what HTCondor transfers back anyway: copy once,
        # at the end, instead of after every save.
        host_job.checkpoint.upload_every_save = False
    document = job_document(host_job, {"kind": "chtc", "time_limit_seconds": s.time_limit_seconds})
    document["derived"]["deadline_epoch"] = None
    return document


def render(job, secrets: dict[str, str] | None = None) -> tuple[Path, str, Settings]:
    """Write the run folder: trainyard_runtime.pyz, job.json, train_wrapper.sh, train.sub, and .env (0600) with the
    secrets the job gets. HTCondor transfers .env with the job; `getenv` would put them in the job's ClassAd, which
    every user of the access point reads (measured on HTCondor 23.9: tests/test_chtc_pool.py)."""
    s = settings(job)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    build_bundle(s.run_dir)
    write_job(s.run_dir, job_for_host(job, s))
    write_dotenv(s.run_dir, secrets or {})
    wrapper = s.run_dir / WRAPPER
    shutil.copyfile(CHTC_DIR / WRAPPER, wrapper)
    wrapper.chmod(0o755)
    submit_file = s.run_dir / "train.sub"
    text = render_text(s, submit_file.as_posix())
    submit_file.write_text(text)
    return submit_file, text, s


# --- verbs ----------------------------------------------------------------------------------------------------


def plan(job, options: LaunchOptions = LaunchOptions()) -> Plan:
    s = settings(job, strict=False)
    commands = render_commands(job, s.gpu_count, bin_dir="/opt/venv/bin")
    notes = "; ".join(s.notes)
    return plan_of(
        job, DESCRIPTOR, gpu={"id": "|".join(s.gpu_keys), "name": " or ".join(s.gpu_names), "memory_gb": s.min_gpu_memory_gb},
        gpu_count=s.gpu_count, price_per_hour=0.0,
        why=(f"CHTC GPU Lab (free for UW–Madison research): {s.requirements}, >= {s.gpus_minimum_memory} MB, "
             f"capability >= {_capability(s.gpus_minimum_capability)}, +GPUJobLength '{s.job_length}' "
             f"({JOB_LENGTH_HOURS[s.job_length]} h)" + (f"; {notes}" if notes else "")),
        commands=commands, files=[f"{s.run_dir.as_posix()}/{name}" for name in ("train.sub", WRAPPER, BUNDLE_NAME, "job.json")],
        submit=s.submit_values(), warnings=list(s.warnings))


def _placeholder(value: str | None) -> bool:
    return value is None or value.lower().startswith(PLACEHOLDER_PREFIXES)


def check_submittable(s: Settings) -> None:
    if s.universe == "docker" and _placeholder(s.image):
        raise ConfigError("chtc.image", f"'{s.image}' is not an image you pushed",
                          "build and push one (`invoke docker.build --stack openpi --tag you/openpi_train:latest`, "
                          "then docker.push) and set chtc.image")
    if s.netid is not None and _placeholder(s.netid):
        raise ConfigError("chtc.netid", f"'{s.netid}' is a placeholder", "set your NetID, or remove the key to use $USER")


def launch(job, plan: Plan, options: LaunchOptions) -> int:
    """Render the run folder and condor_submit it (here, on the access point); elsewhere say what to run there. The
    job id goes into the run folder (submitted.json), so `invoke logs|stop RUN` find the job by its run id. (`mode`:
    the runtime resumes by itself from the store after an eviction; there is no other mode on the pool.)"""
    submit_file, _text, s = render(job, host_secrets(job, DESCRIPTOR))
    check_submittable(s)
    say(f"submit file: {submit_file}")
    if not shutil.which("condor_submit"):
        warn(f"not submitted: condor_submit is not on this machine. Copy the repository (with {s.run_dir}/) to the "
             f"CHTC access point and run there, from its root:\n  condor_submit {submit_file}")
        return 1  # nothing was submitted: a script (or `make chtc-submit`) must not take this for success
    staging = Path(s.staging_dir.replace("$(netid)", s.netid or os.environ.get("USER", "")))
    if staging.parent.is_dir() and not staging.exists():  # the remap's target: missing, it holds the job at its end
        staging.mkdir(parents=True, exist_ok=True)
        say(f"created {staging} (where HTCondor puts the checkpoints when the job ends)")
    done = subprocess.run(["condor_submit", str(submit_file)], capture_output=True, text=True)
    say(done.stdout.strip())
    if done.returncode != 0:
        raise ProviderError(f"condor_submit failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    cluster = re.search(r"submitted to cluster (\d+)", done.stdout)
    if cluster:
        (s.run_dir / SUBMITTED).write_text(json.dumps({"job_id": f"{cluster[1]}.0", "submitted": time.time()}))
    run = s.run_dir.name
    say(f"follow it: invoke logs {run} --follow; status: invoke chtc.status; end it: invoke stop {run}")
    return 0


def _condor(tool: str, *args: str) -> int:
    if not shutil.which(tool):
        raise ProviderError(f"{tool} is not on this machine — run it on the CHTC access point")
    return subprocess.run([tool, *args]).returncode


def queue(handle=None, all_jobs: bool = False) -> int:
    """condor_q: Trainyard's jobs (all of yours with all_jobs; one job, given a handle with its job id)."""
    if handle is not None and (job_id := job_id_of(handle)):
        return _condor("condor_q", "-batch", job_id)
    args = [] if all_jobs else ["-constraint", "TrainyardRun =!= undefined"]
    return _condor("condor_q", "-batch", *args)


def run_folder(run_id: str) -> Path | None:
    """runs/chtc/<config_name>/<run_id>/ of a rendered or submitted run (the newest, if several configs used the name)."""
    found = sorted((current().runs_dir / "chtc").glob(f"*/{run_id}/train.sub"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def job_id_of(handle) -> str | None:
    """The HTCondor job id of a handle: its own, else the one condor_submit gave the run (submitted.json)."""
    if handle.native_id:
        return handle.native_id
    folder = run_folder(handle.run_id) if handle.run_id else None
    try:
        return json.loads((folder / SUBMITTED).read_text())["job_id"] if folder else None
    except (OSError, ValueError, KeyError):
        return None


def status(handle: RunHandle | None = None) -> list[list]:
    """condor_q of Trainyard's jobs (of one run's job, given its handle), printed as HTCondor prints it; the rows
    are HTCondor's own table, so none are returned."""
    code = queue(handle)
    if code:
        raise ProviderError(f"condor_q failed (exit {code})")
    return []


def logs(handle: RunHandle, follow: bool = False) -> None:
    """condor_tail of the run's job while HTCondor has it; else the stdout file the job left in its run folder."""
    job_id = job_id_of(handle)
    folder = run_folder(handle.run_id) if handle.run_id else None
    outputs = sorted(folder.glob("*.out"), key=lambda p: p.stat().st_mtime) if folder else []
    mine = [p for p in outputs if p.name == f"{job_id}.out"] or outputs
    if job_id and _in_queue(job_id):
        _condor("condor_tail", *(["-f"] if follow else []), job_id)
        return
    if not mine:
        raise ConfigError("--run-id", f"no output of CHTC run '{handle.run_id}' here yet",
                          "see `invoke chtc.status` (the job writes its stdout when it runs)")
    if follow:
        subprocess.run(["tail", "-n", "+1", "-F", str(mine[-1])])
        return
    say(mine[-1].read_text(errors="replace"))


def _in_queue(job_id: str) -> bool:
    if not shutil.which("condor_q"):
        return False
    done = subprocess.run(["condor_q", "-af", "JobStatus", job_id], capture_output=True, text=True)
    return done.returncode == 0 and bool(done.stdout.strip())


def fetch(handle: RunHandle, dest: str | Path | None = None) -> Path:
    """The run folder here; HTCondor transfers checkpoints to /staging (`invoke chtc.pull` copies them home)."""
    folder = run_folder(handle.run_id)
    if folder is None:
        raise ConfigError("run_id", f"no CHTC run folder for '{handle.run_id}' in {current().runs_dir}/chtc/",
                          "render or submit it first (invoke chtc.submit)")
    say(f"run folder of {handle.run_id}: {folder}/ — checkpoints: `invoke chtc.pull` (from /staging)")
    return folder


def stop(handle: RunHandle) -> None:
    """condor_rm the run's job (the handle's job id, else the one recorded at submit)."""
    job_id = job_id_of(handle)
    if not job_id:
        raise ConfigError("--run-id", f"no HTCondor job recorded for run '{handle.run_id}'",
                          "pass the job id (see `invoke chtc.status`), e.g. 12345.0")
    if _condor("condor_rm", job_id):
        raise ProviderError(f"condor_rm {job_id} failed (see above)")
