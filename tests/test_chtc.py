"""CHTC / HTCondor (seed 003): submit files read by the real HTCondor bindings, Requirements matched against machine
ClassAds with classad2, the wrapper resuming after an eviction (real runtime bundle, fake `uv` standing in for
openpi), stage/pull over rsync+SSH to a real sshd, and the seed's other steps (convert, push, serve).

HTCondor's Python bindings (htcondor2 25.x) parse submit text but cannot turn it into job ads here (`jobs()` /
`procs()` are not implemented), so every key is read with `Submit.expand(key)`, and the job ad's GPU part is built
the way condor_submit documents it: `gpus_minimum_capability` / `gpus_minimum_memory` become `RequireGPUs`
(`Capability >= X && GlobalMemoryMb >= Y`), matched per GPU with `countMatches(MY.RequireGPUs, TARGET.AvailableGPUs)`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import classad2
import htcondor2
import pytest
import yaml

from helpers.backends import chtc_condor
from helpers.config import load_job
from helpers.workspace import opened

REPO = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "-r", str(REPO)]
WRAPPER = REPO / "chtc" / "train_wrapper.sh"
CANARIES = {"WANDB_API_KEY": "wandbcanary0123456789abcdef", "HF_TOKEN": "hf_" + "canaryCANARY" * 2 + "canary0123"}


# --- helpers --------------------------------------------------------------------------------------------------


def submit_of(text: str, **variables: str) -> htcondor2.Submit:
    """Parse like `condor_submit FILE key=value ...`: command-line assignments act as if placed at the top."""
    head = "".join(f"{key} = {value}\n" for key, value in variables.items())
    return htcondor2.Submit(head + text)


def expanded(sub: htcondor2.Submit) -> dict[str, str]:
    """Every key of the submit description, each read through Submit.expand."""
    return {key: sub.expand(key) for key in sub.keys()}


def gpu_slot(device: str, capability: float, memory_mb: int, count: int = 2) -> classad2.ClassAd:
    """A CHTC GPU Lab slot with `count` GPUs, with the attributes condor_gpu_discovery publishes."""
    names = ", ".join(f"GPUs_GPU_{i}" for i in range(count))
    gpus = "".join(f'GPUs_GPU_{i} = [ Id = "GPU-{i}"; DeviceName = "{device}"; Capability = {capability}; '
                   f"GlobalMemoryMb = {memory_mb} ];" for i in range(count))
    return classad2.parseOne(f"""[
        Arch = "X86_64"; OpSys = "LINUX"; HasDocker = true; Cpus = 16; Memory = 262144; Disk = 1000000000;
        GPUs = {count}; GPUs_DeviceName = "{device}"; GPUs_Capability = {capability}; GPUs_GlobalMemoryMb = {memory_mb};
        AvailableGPUs = {{ {names} }}; {gpus}
        HasCHTCStaging = true; Requirements = true
    ]""")


# Device names and memory as the driver reports them (nvidia-smi memory.total, MiB).
SLOTS = {
    "H100": gpu_slot("NVIDIA H100 80GB HBM3", 9.0, 81559),
    "H200": gpu_slot("NVIDIA H200", 9.0, 143771),
    "L40S": gpu_slot("NVIDIA L40S", 8.9, 46068),
    "L40": gpu_slot("NVIDIA L40", 8.9, 46068),
    "A100-80": gpu_slot("NVIDIA A100-SXM4-80GB", 8.0, 81920),
}


def job_ad(values: dict[str, str]) -> classad2.ClassAd:
    """The GPU part of the job ad condor_submit builds from these submit values."""
    ad = classad2.ClassAd()
    ad["RequestGPUs"] = int(values["request_gpus"])
    ad["RequireGPUs"] = classad2.ExprTree(
        f"Capability >= {values['gpus_minimum_capability']} && GlobalMemoryMb >= {values['gpus_minimum_memory']}")
    ad["Requirements"] = classad2.ExprTree(
        f"({values['Requirements']}) && countMatches(MY.RequireGPUs, TARGET.AvailableGPUs) >= MY.RequestGPUs")
    return ad


def matching(values: dict[str, str]) -> set[str]:
    ad = job_ad(values)
    return {name for name, slot in SLOTS.items() if slot.matches(ad)}


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def openpi_config(tmp_path: Path, name: str = "job.yaml", **sections) -> Path:
    data = {"job": {"name": "pi05-collab"}, "framework": "openpi",
            "openpi": {"config_name": "pi05_collab", "exp_name": "my_run"},
            "chtc": {"netid": "bucky", "image": "bucky/openpi_train:1"}}
    for key, value in sections.items():
        data.setdefault(key, {})
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return write_config(tmp_path / name, data)


def rendered(tmp_path: Path, config: Path, **variables: str) -> tuple[dict[str, str], chtc_condor.Settings, Path]:
    with opened(env_file=None, runs_dir=tmp_path / "runs"):
        submit_file, text, settings = chtc_condor.render(load_job(config, environ={}))
    return expanded(submit_of(text, **variables)), settings, submit_file


# --- the ready submit file ------------------------------------------------------------------------------------


def test_ready_submit_file_is_the_template_rendered():
    assert (REPO / "chtc" / "train.sub").read_text() == chtc_condor.static_text(), \
        "chtc/train.sub is stale: regenerate it with `invoke chtc.render --static > chtc/train.sub`"


def test_ready_submit_file_with_the_seeds_command_line():
    """`condor_submit chtc/train.sub config_name=pi05_collab exp_name=my_run` (the seed's command)."""
    text = (REPO / "chtc" / "train.sub").read_text()
    values = expanded(submit_of(text, config_name="pi05_collab", exp_name="my_run", netid="bucky"))
    assert values["universe"] == "docker"
    assert values["docker_image"] == "your-dockerhub-user/openpi_train:latest"
    assert values["executable"] == "chtc/train_wrapper.sh"
    assert values["arguments"] == "pi05_collab my_run"
    assert values["should_transfer_files"] == "YES"
    assert values["when_to_transfer_output"] == "ON_EXIT_OR_EVICT"
    assert values["transfer_input_files"] == ("runs/chtc/pi05_collab/my_run/trainyard_runtime.pyz, "
                                              "runs/chtc/pi05_collab/my_run/job.json, runs/chtc/pi05_collab/my_run/.env")
    assert values["transfer_output_files"] == "checkpoints"
    assert values["transfer_output_remaps"] == '"checkpoints = /staging/bucky/openpi/checkpoints"'
    assert "getenv" not in values  # it would put the secrets in the job's ClassAd (tests/test_chtc_pool.py)
    assert values["request_gpus"] == "1" and values["request_cpus"] == "8"
    assert values["request_memory"] == "64GB" and values["request_disk"] == "200GB"
    assert values["gpus_minimum_capability"] == "9.0"
    assert values["gpus_minimum_memory"] == "24576"
    assert values["Requirements"] == 'regexp("H100|H200", TARGET.GPUs_DeviceName)'
    assert values["MY.GPUJobLength"] == '"short"'
    assert values["MY.WantGPULab"] == "true"
    assert values["MY.TrainyardRun"] == '"pi05_collab/my_run"'
    assert not any("UNDEFINED" in v for v in values.values()), values
    # The command line wins over the file's defaults; without it the defaults hold.
    other = expanded(submit_of(text, config_name="pi0_collab", exp_name="second", netid="bucky", image="me/img:2"))
    assert other["arguments"] == "pi0_collab second" and other["docker_image"] == "me/img:2"
    assert expanded(submit_of(text, netid="bucky"))["arguments"] == "pi05_collab my_run"
    assert matching(values) == {"H100", "H200"}


def test_staged_dataset_variable_adds_the_input_and_the_staging_requirement():
    text = (REPO / "chtc" / "train.sub").read_text()
    values = expanded(submit_of(text, netid="bucky", dataset="local__collab.lerobot.tar.gz"))
    assert values["transfer_input_files"].endswith(", file:///staging/bucky/openpi/data/local__collab.lerobot.tar.gz")
    assert values["Requirements"].endswith("&& (TARGET.HasCHTCStaging == true)")
    classad2.ExprTree(values["Requirements"])  # still a valid expression
    assert matching(values) == {"H100", "H200"}


def test_netid_defaults_to_the_submitting_user(monkeypatch):
    monkeypatch.setenv("USER", "badger")
    values = expanded(submit_of((REPO / "chtc" / "train.sub").read_text()))
    assert values["transfer_output_remaps"] == '"checkpoints = /staging/badger/openpi/checkpoints"'


# --- rendering from the config: presets ------------------------------------------------------------------------


PRESETS = {
    # name: (config sections, expected values, GPUs that must match)
    "example config (LoRA, L40S allowed)": (
        None,
        {"gpus_minimum_memory": "24576", "gpus_minimum_capability": "8.9", "MY.GPUJobLength": '"short"',
         "Requirements": 'regexp("H100|H200|L40S", TARGET.GPUs_DeviceName)'},
        {"H100", "H200", "L40S"},
    ),
    "LoRA: the estimate (openpi pi05 LoRA at batch 8, ~12 GB)": (
        {"model": {"method": "lora"}},
        {"gpus_minimum_memory": "12038", "gpus_minimum_capability": "9.0", "MY.GPUJobLength": '"short"',
         "Requirements": 'regexp("H100|H200", TARGET.GPUs_DeviceName)'},
        {"H100", "H200"},
    ),
    "full fine-tune: the estimate (~68 GB at batch 8)": (
        {"model": {"method": "full"}},
        {"gpus_minimum_memory": "64593", "gpus_minimum_capability": "9.0", "MY.GPUJobLength": '"long"'},
        {"H100", "H200"},
    ),
    "full fine-tune naming L40S": (
        {"model": {"method": "full"}, "resources": {"gpu": ["H100", "L40S"]}},
        {"gpus_minimum_memory": "64593", "gpus_minimum_capability": "8.9",
         "Requirements": 'regexp("H100|L40S", TARGET.GPUs_DeviceName)'},
        {"H100"},  # L40S is named but has 45 GB: the memory minimum keeps it out
    ),
    "explicit chtc keys win": (
        {"model": {"method": "lora"}, "resources": {"gpu": "H100", "gpu_count": 2},
         "chtc": {"gpu_names": ["A100", "H200"], "gpus_minimum_memory": 40000, "gpus_minimum_capability": 8.0,
                  "job_length": "medium", "request_cpus": 16, "request_memory": "128GB", "request_disk": "500GB"}},
        {"gpus_minimum_memory": "40000", "gpus_minimum_capability": "8.0", "MY.GPUJobLength": '"medium"',
         "Requirements": 'regexp("A100-SXM4-80GB|H200", TARGET.GPUs_DeviceName)', "request_gpus": "2",
         "request_cpus": "16", "request_memory": "128GB", "request_disk": "500GB"},
        {"A100-80", "H200"},
    ),
    "time limit picks the job class": (
        {"model": {"method": "full"}, "limits": {"time_limit": "20h"}},
        {"MY.GPUJobLength": '"medium"', "gpus_minimum_memory": "64593"},
        {"H100", "H200"},
    ),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_render_what_the_config_asked_for(tmp_path, name):
    sections, expected, matches = PRESETS[name]
    config = REPO / "configs" / "openpi_pi05_lora.yaml" if sections is None else openpi_config(tmp_path, **sections)
    values, settings, submit_file = rendered(tmp_path, config, config_name="pi05_collab", exp_name="x")
    for key, value in expected.items():
        assert values[key] == value, (key, values[key])
    assert matching(values) == matches, values["Requirements"]
    # the run folder the file points at holds what it transfers
    run_dir = Path(values["transfer_input_files"].split(",")[0]).parent
    assert {p.name for p in run_dir.iterdir()} == {"trainyard_runtime.pyz", "job.json", "train_wrapper.sh", "train.sub", ".env"}
    assert os.access(run_dir / "train_wrapper.sh", os.X_OK)
    assert values["executable"] == f"{run_dir.as_posix()}/train_wrapper.sh"


def test_81920_mb_would_leave_out_every_h100():
    """Why the full fine-tune preset asks for 80000 MB: an "80GB" H100 reports 81559 MB."""
    base = {"request_gpus": "1", "gpus_minimum_capability": "9.0", "Requirements": 'regexp("H100|H200", TARGET.GPUs_DeviceName)'}
    assert matching({**base, "gpus_minimum_memory": "81920"}) == {"H100", "H200"} - {"H100"}
    assert matching({**base, "gpus_minimum_memory": str(chtc_condor.FULL_MIN_MEMORY_MB)}) == {"H100", "H200"}


def test_l40_and_l40s_are_told_apart(tmp_path):
    values, _, _ = rendered(tmp_path, openpi_config(tmp_path, model={"method": "lora"}, resources={"gpu": ["L40"]}))
    assert matching(values) == {"L40"}


def test_job_json_for_the_pool(tmp_path):
    config = openpi_config(tmp_path, limits={"time_limit": "2h"})
    _, settings, submit_file = rendered(tmp_path, config)
    doc = json.loads((submit_file.parent / "job.json").read_text())
    assert doc["machine"] == {"kind": "chtc", "time_limit_seconds": 7200.0}
    assert doc["derived"]["deadline_epoch"] is None  # set by the wrapper when the job starts, not at submission
    assert doc["config"]["checkpoint"]["upload_every_save"] is False  # the sandbox store is a copy, taken once
    no_limit = openpi_config(tmp_path, name="b.yaml", model={"method": "lora"})
    assert chtc_condor.settings(load_job(no_limit, environ={})).time_limit_seconds == 12 * 3600 - chtc_condor.STOP_MARGIN_SECONDS


def test_unknown_and_non_chtc_gpus(tmp_path):
    from helpers.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown GPU 'H10O'"):
        chtc_condor.settings(load_job(openpi_config(tmp_path, chtc={"gpu_names": ["H10O"]}), environ={}))
    with pytest.raises(ConfigError, match="none of these GPUs is in the CHTC GPU Lab"):
        chtc_condor.settings(load_job(openpi_config(tmp_path, resources={"gpu": ["RTX 4090"]}), environ={}))
    s = chtc_condor.settings(load_job(openpi_config(tmp_path, resources={"gpu": ["RTX 4090", "H200"]}), environ={}))
    assert s.requirements == 'regexp("H200", TARGET.GPUs_DeviceName)' and any("RTX-4090" in n for n in s.notes)


def test_lerobot_jobs_transfer_their_output_folder(tmp_path):
    from helpers.errors import ConfigError

    act = REPO / "configs" / "act.yaml"  # RTX 4090 / L40S, full training of a small policy
    small = chtc_condor.settings(load_job(act, environ={}))  # not the 80 GB full fine-tune preset: its estimate
    estimate = chtc_condor._estimate_gb(load_job(act, environ={}))
    assert estimate < 10 and small.gpus_minimum_memory == math.ceil(estimate * 1e9 / 2**20) and small.gpu_names == ["L40S"]
    with pytest.raises(ConfigError, match="none of L40S has 80000 MB"):  # the preset still applies when asked for
        chtc_condor.settings(load_job(write_config(tmp_path / "big.yaml", {
            **yaml.safe_load(act.read_text()), "chtc": {"gpus_minimum_memory": 80000}}), environ={}))
    values, settings, _ = rendered(tmp_path, write_config(tmp_path / "act.yaml", {
        **yaml.safe_load(act.read_text()), "resources": {"gpu": ["RTX 4090", "L40S"], "min_vram_gb": 16},
        "chtc": {"image": "bucky/lerobot-train:0.4.4"}}))
    assert values["transfer_output_files"] == "outputs"
    assert values["transfer_output_remaps"].startswith('"outputs = /staging/')
    assert values["transfer_output_remaps"].endswith('/openpi/outputs"')
    assert values["arguments"] == "lerobot act-soft-manip" and values["gpus_minimum_memory"] == "16384"
    assert matching(values) == {"L40S"}


def test_plan_is_free_and_names_the_gpus(tmp_path):
    plan = chtc_condor.plan(load_job(REPO / "configs" / "openpi_pi05_lora.yaml", environ={}))
    assert plan.price_per_hour == 0.0 and plan.backend == "chtc"
    assert "H100" in plan.gpu["name"] and "L40S" in plan.gpu["name"]
    assert plan.commands[0].startswith("uv run scripts/train.py pi05_collab --exp-name=my_run")
    assert plan.submit["gpus_minimum_memory"] == 24576


# --- secrets ---------------------------------------------------------------------------------------------------


def test_no_secret_in_any_generated_file_or_output(tmp_path):
    env = {**os.environ, **CANARIES, "PYTHONPATH": str(REPO)}
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in CANARIES.items()))
    config = openpi_config(tmp_path, wandb={"enable": True}, checkpoint={"store": "hf://bucky/pi05-ckpt"})
    done = subprocess.run(INVOKE + ["chtc.render", "--config", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert {p.name for p in written} == {"trainyard_runtime.pyz", "job.json", "train_wrapper.sh", "train.sub", ".env"}
    (dotenv,) = [p for p in written if p.name == ".env"]  # the one place they are: transferred with the job, 0600
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    assert sorted(dotenv.read_text().splitlines()) == sorted(f"{k}={v}" for k, v in CANARIES.items()
                                                             if k in ("HF_TOKEN", "WANDB_API_KEY"))
    written.remove(dotenv)
    blobs = [p.read_bytes() for p in written] + [done.stdout.encode(), done.stderr.encode()]
    for path in written:
        if path.suffix == ".pyz":
            import zipfile

            with zipfile.ZipFile(path) as bundle:
                blobs += [bundle.read(name) for name in bundle.namelist()]
    for value in CANARIES.values():
        assert not any(value.encode() in blob for blob in blobs), "a secret reached a generated file"
    assert "\ngetenv" not in done.stdout and "$(run_dir)/.env" in done.stdout


def test_submit_passes_secrets_only_in_the_jobs_dotenv(tmp_path, monkeypatch):
    """With condor_submit on PATH (a recording stand-in), `chtc.submit` runs it on the rendered file; the .env
    secrets reach the run folder's .env (0600, transferred with the job), never condor_submit's environment (getenv
    would copy them into the ClassAd), its arguments or the submit file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "condor_submit.json"
    fake = bin_dir / "condor_submit"
    fake.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    f"json.dump({{'argv': sys.argv[1:], 'env': {{k: os.environ.get(k) for k in ('WANDB_API_KEY', 'HF_TOKEN')}}}}, "
                    f"open({str(record)!r}, 'w'))\nprint('1 job(s) submitted to cluster 4242.')\n")
    fake.chmod(0o755)
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in CANARIES.items()))
    env = {k: v for k, v in os.environ.items() if k not in CANARIES}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(REPO))
    config = openpi_config(tmp_path, wandb={"enable": True})
    done = subprocess.run(INVOKE + ["chtc.submit", "--config", str(config), "--exp-name", "e7"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted to cluster 4242" in done.stdout
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["runs/chtc/pi05_collab/e7/train.sub"]
    assert seen["env"] == {"WANDB_API_KEY": None, "HF_TOKEN": None}
    dotenv = tmp_path / "runs/chtc/pi05_collab/e7/.env"
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600 and CANARIES["WANDB_API_KEY"] in dotenv.read_text()
    text = (tmp_path / "runs/chtc/pi05_collab/e7/train.sub").read_text()
    assert not any(v in text for v in CANARIES.values())
    assert not any(v in done.stdout + done.stderr for v in CANARIES.values())


def test_a_submitted_run_is_found_by_its_run_id_for_logs_and_stop_in_a_custom_runs_dir(tmp_path):
    """`invoke logs RUN` and `invoke stop RUN` of a CHTC run: the job id condor_submit gave it is kept in its run
    folder, so stop removes that job (not "which job?") and logs shows that run's output, not the newest of any
    run; all under `trainyard.runs_dir` (Invoke's configuration), where the launch wrote the run and find_run looks.
    The condor tools are recording stand-ins here; tests/test_chtc_pool.py does the same on a real pool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    removed = tmp_path / "condor_rm.args"
    tools = {"condor_submit": "n=$(cat {d}/next); echo $((n + 1)) > {d}/next; echo \"1 job(s) submitted to cluster $n.\"",
             "condor_q": "exit 0",  # the job left the queue: logs reads the run folder
             "condor_rm": f"echo \"$@\" >> {removed}"}
    for name, body in tools.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body.format(d=bin_dir) + "\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "next").write_text("4300\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "INVOKE_TRAINYARD_RUNS_DIR": "lab_runs"}  # Invoke's configuration: trainyard.runs_dir
    config = openpi_config(tmp_path)
    for exp in ("e9", "e10"):
        done = subprocess.run(INVOKE + ["chtc.submit", "--config", str(config), "--exp-name", exp], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"invoke logs {exp} --follow" in done.stdout
    folders = {exp: tmp_path / "lab_runs/chtc/pi05_collab" / exp for exp in ("e9", "e10")}
    assert not (tmp_path / "runs").exists() and all((f / "train.sub").is_file() for f in folders.values())
    (folders["e9"] / "4300.0.out").write_text("step:10 of e9\n")
    time.sleep(0.05)
    (folders["e10"] / "4301.0.out").write_text("step:20 of e10\n")  # the newest output of any run
    shown = subprocess.run(INVOKE + ["logs", "e9"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "of e9" in shown.stdout and "of e10" not in shown.stdout, shown.stdout + shown.stderr
    stopped = subprocess.run(INVOKE + ["stop", "e9"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert removed.read_text().split() == ["4300.0"]


def test_submit_without_condor_says_where_the_file_is(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    config = openpi_config(tmp_path)
    done = subprocess.run(INVOKE + ["chtc.submit", "--config", str(config), "--exp-name", "e8"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # nothing was submitted: not a success (`make chtc-submit` fails too)
    assert "not submitted" in done.stdout and "condor_submit runs/chtc/pi05_collab/e8/train.sub" in done.stdout


def test_submit_refuses_placeholders(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_API_KEY": CANARIES["WANDB_API_KEY"]}
    done = subprocess.run(INVOKE + ["chtc.submit", "--config", str(REPO / "configs" / "openpi_pi05_lora.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "chtc.image" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_invoke_render_output_parses(tmp_path):
    config = openpi_config(tmp_path, model={"method": "full"})
    done = subprocess.run(INVOKE + ["chtc.render", "--config", str(config), "--exp-name", "rendered"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    values = expanded(submit_of(done.stdout))
    assert values["arguments"] == "pi05_collab rendered"
    assert values["transfer_input_files"] == ("runs/chtc/pi05_collab/rendered/trainyard_runtime.pyz, "
                                              "runs/chtc/pi05_collab/rendered/job.json, runs/chtc/pi05_collab/rendered/.env")
    assert values["MY.GPUJobLength"] == '"long"' and values["gpus_minimum_memory"] == "64593"  # the estimate at batch 8
    assert matching(values) == {"H100", "H200"}
    static = subprocess.run(INVOKE + ["chtc.render", "--static"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert static.stdout == (REPO / "chtc" / "train.sub").read_text()


# --- the wrapper ----------------------------------------------------------------------------------------------

FAKE_UV = REPO / "tests" / "fake_openpi_uv.py"  # openpi's checkpoint layout and rules


@pytest.fixture
def host(tmp_path):
    """What a GPU Lab job sees: a run folder rendered from an openpi config, an image with openpi (here: a checkout
    folder and a fake `uv`), and a function that makes a fresh sandbox with the transferred files."""
    config = openpi_config(tmp_path, training={"steps": 40, "save_freq": 10, "batch_size": 2})
    with opened(env_file=None, runs_dir=tmp_path / "runs"):
        submit_file, _, _ = chtc_condor.render(load_job(config, environ={}))
    run_dir = submit_file.parent
    image = tmp_path / "image"
    (image / "openpi" / "scripts").mkdir(parents=True)
    (image / "openpi" / "scripts" / "train.py").write_text("# openpi's trainer (not run here)\n")
    (image / "bin").mkdir()
    (image / "bin" / "uv").write_text(f"#!{sys.executable}\n" + FAKE_UV.read_text().split("\n", 1)[1])
    (image / "bin" / "uv").chmod(0o755)
    log = tmp_path / "uv.jsonl"

    def sandbox(name: str, checkpoints_from: Path | None = None) -> Path:
        box = tmp_path / name
        box.mkdir()
        for item in ("trainyard_runtime.pyz", "job.json"):
            shutil.copy(run_dir / item, box / item)  # the transferred inputs, as rendered (not the patched copy)
        if checkpoints_from is not None:  # what HTCondor brings back after an eviction
            shutil.copytree(checkpoints_from / "checkpoints", box / "checkpoints", symlinks=True)
        return box

    def start(box: Path, *args: str, pace: float = 0.01) -> subprocess.Popen:
        env = {**os.environ, "PATH": f"{image / 'bin'}:{os.environ['PATH']}", "OPENPI_DIR": str(image / "openpi"),
               "TRAINYARD_PYTHON": sys.executable, "_CONDOR_SCRATCH_DIR": str(box), "FAKE_UV_LOG": str(log),
               "FAKE_UV_PACE": str(pace), "HOME": str(box)}
        env.pop("TRAINYARD_ENV_DIR", None)
        return subprocess.Popen(["bash", str(WRAPPER), *args], cwd=box, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return sandbox, start, calls


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_wrapper_resumes_from_transferred_back_checkpoints_after_an_eviction(host):
    sandbox, start, calls = host
    first = sandbox("sandbox1")
    job = start(first, "pi05_collab", "evicted", pace=0.02)
    wait_for(first / "checkpoints" / "pi05_collab" / "evicted" / "20")
    for group in (job.pid, calls()[0]["pid"]):  # the machine is gone: every process dies, nothing cleans up
        os.killpg(group, signal.SIGKILL)
    job.wait()
    fresh = calls()[0]["argv"]
    assert "--resume" not in fresh and "--overwrite" not in fresh
    assert calls()[0]["cwd"].endswith("image/openpi")

    second = sandbox("sandbox2", checkpoints_from=first)
    job = start(second, "pi05_collab", "evicted")
    out, _ = job.communicate(timeout=120)
    assert job.returncode == 0, out
    resumed = calls()[1]["argv"]
    assert "--resume" in resumed and "--overwrite" not in resumed
    assert f"--checkpoint-base-dir={second / 'checkpoints'}" in resumed
    assert "--exp-name=evicted" in resumed  # the submit's exp_name, not job.json's my_run
    done = sorted(int(p.name) for p in (second / "checkpoints" / "pi05_collab" / "evicted").iterdir() if p.name.isdigit())
    assert done[-1] == 39
    assert "(transferred back): resuming from it" in out
    steps = [int(line.split("step:")[1].split()[0]) for line in out.splitlines() if line.startswith("step:")]
    assert steps and steps[0] > 20, "training started over instead of resuming"


def test_wrapper_clears_a_checkpoint_folder_without_a_complete_step(host):
    sandbox, start, calls = host
    box = sandbox("sandbox")
    partial = box / "checkpoints" / "pi05_collab" / "my_run" / "10.orbax-checkpoint-tmp"
    partial.mkdir(parents=True)  # evicted during the first save
    (box / "checkpoints" / "pi05_collab" / "my_run" / "wandb_id.txt").write_text("abc")
    job = start(box)
    out, _ = job.communicate(timeout=120)
    assert job.returncode == 0, out
    assert "holds no complete checkpoint: clearing it" in out
    assert "--resume" not in calls()[0]["argv"] and "FileExistsError" not in out


def test_wrapper_passes_condors_sigterm_to_the_runtime(host):
    sandbox, start, calls = host
    box = sandbox("sandbox")
    job = start(box, pace=0.05)
    wait_for(box / "checkpoints" / "pi05_collab" / "my_run" / "10")
    job.send_signal(signal.SIGTERM)  # HTCondor signals the job's top process only
    out, _ = job.communicate(timeout=120)
    assert "received SIGTERM" in out
    assert job.returncode == 3, out  # the runtime's "stopped early, checkpoint synced" status
    assert "stopping the trainer: signal SIGTERM" in out


def test_wrapper_without_a_job_document_explains(tmp_path):
    done = subprocess.run(["bash", str(WRAPPER)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "_CONDOR_SCRATCH_DIR": str(tmp_path), "TRAINYARD_RUNTIME": ""})
    assert done.returncode == 2 and "invoke chtc.render" in done.stdout


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "chtc").glob("*.sh")))
def test_shell_scripts_pass_bash_n_and_shellcheck(script):
    path = REPO / "chtc" / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    shellcheck = Path(sys.executable).parent / "shellcheck"
    done = subprocess.run([str(shellcheck), str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- stage / pull over SSH ------------------------------------------------------------------------------------


@pytest.fixture
def transfer_host(tmp_path):
    """The CHTC transfer host: a real sshd on 127.0.0.1 (emulators/sshhost.py); /staging is /root/staging."""
    from emulators.sshhost import SshHost, generate_keypair

    key, public = generate_keypair(tmp_path / "keys")
    host = SshHost(tmp_path / "transfer", public)
    port = host.start()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host.host_public_key}\n")
    env = {**os.environ, "CHTC_TRANSFER_HOST": "127.0.0.1", "CHTC_SSH_PORT": str(port), "CHTC_SSH_USER": "root",
           "CHTC_SSH_IDENTITY": str(key), "CHTC_SSH_BATCH": "yes", "CHTC_STAGING_ROOT": "/root/staging",
           "CHTC_SSH_OPTS": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"}
    try:
        yield host, env, host.disk / "staging"
    finally:
        host.stop()


def small_dataset(root: Path) -> Path:
    dataset = root / "lerobot" / "local" / "collab"
    (dataset / "meta").mkdir(parents=True)
    (dataset / "data" / "chunk-000").mkdir(parents=True)
    (dataset / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v2.1", "fps": 10}))
    (dataset / "data" / "chunk-000" / "episode_000000.parquet").write_bytes(os.urandom(50_000))
    return dataset


@pytest.mark.slow
def test_stage_data_then_pull_checkpoints_over_ssh(tmp_path, transfer_host):
    host, env, staging = transfer_host
    dataset = small_dataset(tmp_path / "home")
    done = subprocess.run(INVOKE + ["chtc.stage", "--netid", "bucky", "--dataset-dir", str(dataset)], cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    archive = staging / "bucky" / "openpi" / "data" / "local__collab.lerobot.tar.gz"
    assert archive.is_file() and "dataset=local__collab.lerobot.tar.gz" in done.stdout
    with tarfile.open(archive) as tar:  # what the wrapper unpacks into $HF_LEROBOT_HOME
        assert "local/collab/meta/info.json" in tar.getnames()
        unpacked = tmp_path / "unpacked"
        tar.extractall(unpacked, filter="data")
    assert (unpacked / "local/collab/data/chunk-000/episode_000000.parquet").read_bytes() == \
        (dataset / "data/chunk-000/episode_000000.parquet").read_bytes()

    # what transfer_output_remaps put in /staging after the job: checkpoints/<config>/<exp>/<step>
    remote = staging / "bucky" / "openpi" / "checkpoints" / "pi05_collab" / "my_run"
    for step in (1000, 2000):
        (remote / str(step) / "params").mkdir(parents=True)
        (remote / str(step) / "train_state").mkdir()
        (remote / str(step) / "params" / "weights.bin").write_bytes(os.urandom(10_000))
        (remote / str(step) / "train_state" / "opt.bin").write_bytes(os.urandom(10_000))
    work = tmp_path / "lab"
    work.mkdir()
    pull = ["bash", str(REPO / "chtc" / "pull_checkpoints.sh"), "bucky", "pi05_collab", "my_run"]
    done = subprocess.run(pull, cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    local = work / "checkpoints" / "pi05_collab" / "my_run"
    for step in (1000, 2000):
        assert (local / str(step) / "params" / "weights.bin").read_bytes() == (remote / str(step) / "params" / "weights.bin").read_bytes()
    assert "invoke local.serve --checkpoint checkpoints/pi05_collab/my_run/2000 --config-name pi05_collab" in done.stdout
    # for inference only: the optimizer state stays on /staging
    shutil.rmtree(work / "checkpoints")
    done = subprocess.run(pull, cwd=work, env={**env, "CHTC_PULL_FOR_INFERENCE": "1"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and (local / "2000" / "params").is_dir() and not (local / "2000" / "train_state").exists()


def test_stage_and_pull_tasks_take_the_host_and_names_from_the_config(tmp_path):
    config = openpi_config(tmp_path, chtc={"transfer_host": "xfer.example.edu"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHTC_")}
    done = subprocess.run(INVOKE + ["chtc.pull", "--config", str(config), "--dry-run"], cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"CHTC_TRANSFER_HOST=xfer.example.edu {REPO}/chtc/pull_checkpoints.sh bucky pi05_collab my_run"


def test_stage_and_pull_usage_errors(tmp_path):
    for script, args in (("stage_data.sh", []), ("pull_checkpoints.sh", ["bucky", "cfg"]),
                         ("stage_data.sh", ["bucky", str(tmp_path / "missing")])):
        done = subprocess.run(["bash", str(REPO / "chtc" / script), *args], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 2, (script, done.stderr)


# --- the seed's other steps: convert, push, serve -------------------------------------------------------------


def test_local_serve_dry_run_renders_openpis_command(tmp_path):
    exp = tmp_path / "checkpoints" / "pi05_collab" / "my_run"
    for step in (1000, 2000):
        (exp / str(step) / "params").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(INVOKE + ["local.serve", "--checkpoint", "checkpoints/pi05_collab/my_run", "--repo-dir", "openpi",
                                    "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"cd {tmp_path / 'openpi'} && uv run scripts/serve_policy.py policy:checkpoint "
                                   f"--policy.config=pi05_collab --policy.dir={exp / '2000'}")
    done = subprocess.run(INVOKE + ["local.serve", "--checkpoint", str(exp / "1000"), "--config-name", "pi05_libero",
                                    "--port", "8001", "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "uv run scripts/serve_policy.py --port=8001 policy:checkpoint --policy.config=pi05_libero " \
           f"--policy.dir={exp / '1000'}" in done.stdout


def test_data_convert_passes_arguments_through(tmp_path):
    script = tmp_path / "convert.py"
    script.write_text("import json, sys\njson.dump(sys.argv[1:], open('args.json', 'w'))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    head = INVOKE + ["data.convert", "--script", "convert.py", "--runner", "python"]
    tail = ["--", "--db_dir", "/data/my episodes", "--repo_name", "local/collab", "--fps", "10", "--dry-run"]
    done = subprocess.run(head + ["--dry-run"] + tail, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "convert.py --db_dir '/data/my episodes' --repo_name local/collab --fps 10 --dry-run" in done.stdout
    assert not (tmp_path / "args.json").exists()
    # after `--` everything is the converter's, its own --dry-run included
    done = subprocess.run(head + tail, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "args.json").read_text()) == ["--db_dir", "/data/my episodes", "--repo_name", "local/collab", "--fps", "10",
                                                                   "--dry-run"]


def test_data_push_uploads_a_private_tagged_dataset(tmp_path, hub_server):
    from huggingface_hub import HfApi

    from helpers.cli.data import push_dataset
    from fixtures_hub import HUB_TOKEN, HUB_USER

    dataset = small_dataset(tmp_path)
    repo_id = f"{HUB_USER}/collab"
    first = push_dataset(dataset, repo_id, HUB_TOKEN, batch=1)
    assert first["uploaded"] == 2 and first["tag"] == "v2.1"
    api = HfApi(token=HUB_TOKEN)
    assert api.repo_info(repo_id, repo_type="dataset").private is True
    assert sorted(set(api.list_repo_files(repo_id, repo_type="dataset")) - {".gitattributes"}) == ["data/chunk-000/episode_000000.parquet", "meta/info.json"]
    assert "v2.1" in [t.name for t in api.list_repo_refs(repo_id, repo_type="dataset").tags]
    again = push_dataset(dataset, repo_id, HUB_TOKEN)
    assert again["uploaded"] == 0 and again["skipped"] == 2  # resumable: nothing twice


def test_tasks_are_listed_fast_without_heavy_imports():
    probe = ("import sys, time; t = time.perf_counter(); import tasks; "
             "print(round(time.perf_counter() - t, 3)); "
             "print(sorted(m for m in ('htcondor2', 'classad2', 'jinja2', 'huggingface_hub', 'pydantic') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    seconds, heavy = done.stdout.split("\n")[:2]
    assert heavy == "[]", heavy
    assert float(seconds) < 2.0, f"importing tasks.py took {seconds}s"
    listed = subprocess.run(INVOKE + ["--list"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    for name in ("chtc.submit", "chtc.render", "chtc.status", "chtc.logs", "data.convert", "data.push",
                 "docker.build", "docker.push", "local.serve"):
        assert name in listed
