"""The LeRobot labs run today (0.6.1), trained for real on a Python 3.13 host: the Debian 13 root.

The runtime builds the trainer's environment itself there (uv, `lerobot[training]==0.6.1`, cached inside the root),
builds the synthetic dataset, trains a tiny ACT on CPU with checkpoints synced to the local Hub, is SIGKILLed with
its trainer, and resumes on an empty output directory from the store. The same job with `accelerate launch` and
2 processes (gloo, CPU) proves the command line Trainyard renders for several GPUs: it starts, trains, checkpoints
once per save (rank 0) and resumes. tests/test_lerobot_e2e.py keeps the 0.4.4 run on this machine's Python 3.11.
"""

from __future__ import annotations

import json
import shlex
import shutil

import pytest

from helpers.bundle import render_commands
from helpers.config import validate
from helpers.seed_formats import MODEL_TYPES
from helpers.runtime.progress import step_of
from helpers.runtime.store import HubStore
from tests.fixtures_hub import HUB_TOKEN, HUB_USER
from tests.fixtures_lerobot import TINY_ACT
from tests.runtime_harness import RuntimeRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def job(name: str, repo: str, steps: int, **sections) -> dict:
    data = {
        "job": {"name": name},
        "lerobot": {"version": "0.6.1"},
        "dataset": {"repo_id": "local/synthetic", "root": "/work/synthetic", "synthetic": True},
        "policy": TINY_ACT,
        "training": {"steps": steps, "batch_size": 4, "save_freq": 100, "log_freq": 20, "num_workers": 0},
        "checkpoint": {"store": f"hf://{repo}"},
    }
    data.update(sections)
    return data


def synced_at_least(step: int):
    return lambda line: "synced checkpoint step" in line and int(line.split("step ")[1].split()[0]) >= step


@pytest.mark.parametrize("processes", [1, 2])
def test_lerobot_061_trains_syncs_is_killed_and_resumes_from_the_hub(tmp_path, hub_server, debian_root, processes):
    repo = f"{HUB_USER}/act-061-{processes}p"
    data = job(f"act-061-{processes}p", repo, 500,
               **({"accelerate": {"use": True, "num_processes": 2}} if processes > 1 else {}))
    # torch's gloo teardown can hang after the last checkpoint (seen here with 2 processes): the runtime ends it
    env = {**hub_server.client_env(), "HF_HUB_OFFLINE": "0", "TRAINYARD_EXIT_HANG_S": "20"}
    cas = {hub_server.cas.root: str(hub_server.cas.root)}  # the local Hub's Xet CAS, where hf_xet writes (as a
    # real CAS is reachable from every machine)
    first = RuntimeRun(tmp_path, data, env=env, secrets={"HF_TOKEN": HUB_TOKEN}, skip_setup=False, root=debian_root,
                       shared=cas)
    first.read_until(synced_at_least(200), timeout=1200)
    first.kill_everything()
    out = first.output
    assert "uv pip install lerobot[training]==0.6.1" in out or "environment ready" in out, out[-3000:]
    if processes > 1:
        assert "accelerate launch --multi_gpu --num_processes=2" in out.replace("/root/.cache/trainyard/envs/", "")
    synced = HubStore(repo).latest_step()
    assert synced is not None and 200 <= synced < 500
    state = tmp_path / f"outputs/train/{data['job']['name']}/checkpoints/{synced:06d}/training_state/training_step.json"
    assert json.loads(state.read_text()) == {"step": synced, "num_processes": processes, "batch_size": 4}
    shutil.rmtree(tmp_path / "outputs")  # a new machine: nothing on disk

    second = RuntimeRun(tmp_path, data, mode="resume", env=env, secrets={"HF_TOKEN": HUB_TOKEN}, skip_setup=False,
                        root=debian_root, shared=cas)
    assert second.wait(timeout=900) == 0, second.output[-3000:]
    assert f"restoring step {synced}" in second.output and "environment ready" in second.output
    steps = [step_of(line) for line in second.output.splitlines() if step_of(line) is not None]
    assert steps and min(steps) > synced, "training restarted from zero"
    assert HubStore(repo).latest_step() == 500
    last = tmp_path / f"outputs/train/{data['job']['name']}/checkpoints/last/training_state/training_step.json"
    assert json.loads(last.read_text())["step"] == 500


PROBE = (
    "import sys, json, draccus, lerobot.policies\n"
    "from lerobot.configs.train import TrainPipelineConfig\n"
    "cfg = draccus.parse(config_class=TrainPipelineConfig, args=sys.argv[1:])\n"
    "print(json.dumps({'type': cfg.policy.type, 'steps': cfg.steps, 'eval': cfg.env_eval_freq,"
    " 'base': getattr(cfg.policy, 'base_model_path', None), 'pretrained': str(cfg.policy.pretrained_path)}))\n"
)


@pytest.fixture(scope="module")
def env_061(debian_root, tmp_path_factory) -> str:
    """bin/ of the LeRobot 0.6.1 environment inside the root, built by the runtime's own code (the bundle)."""
    from helpers.bundle import build_bundle

    work = tmp_path_factory.mktemp("bundle")
    build_bundle(work)
    script = ("import sys; sys.path.insert(0, '/work/trainyard_runtime.pyz'); from helpers.runtime import environment; "
              "print(environment.ensure({'framework': 'lerobot', 'lerobot': {'version': '0.6.1'}, "
              "'policy': {'type': 'act'}, 'dataset': {}}, log=lambda m: None))")
    done = debian_root.run(["python3", "-c", script], shared={work: "/work"}, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_every_preset_parses_with_lerobot_061s_own_config(model_type, env_061, debian_root):
    """The command line Trainyard renders for 0.6.1 (the seed's model types, an old flag name in extra_args) is
    what 0.6.1's own draccus config accepts: GR00T's base model is N1.7, --eval_freq arrives as --env_eval_freq."""
    job = validate({"dataset": {"repo_id": "me/data", "root": "/data/x"}, "policy": {"type": model_type},
                    "training": {"steps": 123, "extra_args": ["--eval_freq=77"]}})
    (command,) = render_commands(job, gpus=1, bin_dir=env_061)
    done = debian_root.run([f"{env_061}/python", "-c", PROBE, *shlex.split(command)[1:]], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert (parsed["type"], parsed["steps"], parsed["eval"]) == (MODEL_TYPES[model_type], 123, 77)
    if MODEL_TYPES[model_type] == "groot":
        assert parsed["base"] == "nvidia/GR00T-N1.7-3B"
    if MODEL_TYPES[model_type] == "pi05":
        assert parsed["pretrained"] == "lerobot/pi05_base"
