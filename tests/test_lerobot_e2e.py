"""Real LeRobot on CPU through the runtime, with checkpoints in a private repo on the local Hub.

train -> checkpoints synced to the Hub while training -> kill everything mid-run -> resume from the Hub on a fresh
output dir -> training continues from the synced step, not from zero. Also: every preset's command line parses
with LeRobot's own draccus config, and an interrupted Hub upload never becomes the checkpoint a resume sees.
"""

import json
import shutil
import subprocess

import pytest

from helpers.bundle import render_commands
from helpers.config import MODEL_TYPES, validate
from helpers.runtime.progress import step_of
from helpers.runtime.store import HubStore
from tests.fixtures_hub import HUB_TOKEN, HUB_USER
from tests.fixtures_lerobot import TINY_ACT
from tests.runtime_harness import RuntimeRun

pytestmark = pytest.mark.slow


def test_train_sync_kill_resume_from_the_hub(tmp_path, hub_server, lerobot_bin, synthetic_dataset):
    repo = f"{HUB_USER}/act-e2e-ckpt"
    data = {
        "job": {"name": "act-e2e"},
        "lerobot": {"version": "0.4.4"},  # this machine's Python 3.11 (0.6.1: tests/test_lerobot_current.py)
        "dataset": {"repo_id": "local/synthetic", "root": str(synthetic_dataset)},
        "policy": TINY_ACT,
        "training": {"steps": 1200, "batch_size": 4, "save_freq": 100, "log_freq": 20, "num_workers": 0},
        "checkpoint": {"store": f"hf://{repo}"},
    }
    env = {**hub_server.client_env(), "HF_TOKEN": "", "HF_HUB_OFFLINE": "0"}
    first = RuntimeRun(tmp_path, data, env=env, secrets={"HF_TOKEN": HUB_TOKEN}, python=str(lerobot_bin / "python"))
    first.read_until(lambda line: "synced checkpoint step" in line and int(line.split("step ")[1].split()[0]) >= 300, timeout=300)
    first.kill_everything()
    synced = HubStore(repo).latest_step()
    assert synced is not None and 300 <= synced < 1200
    files = {f.rfilename for f in __import__("huggingface_hub").HfApi().model_info(repo, files_metadata=False).siblings}
    assert {"pretrained_model/model.safetensors", "pretrained_model/train_config.json",
            "training_state/training_step.json", "trainyard.json"} <= files
    assert __import__("huggingface_hub").HfApi().model_info(repo).private is True
    shutil.rmtree(tmp_path / "outputs")  # a new machine: nothing on disk

    second = RuntimeRun(tmp_path, data, mode="resume", env=env, secrets={"HF_TOKEN": HUB_TOKEN}, python=str(lerobot_bin / "python"))
    assert second.wait(timeout=600) == 0, second.output[-3000:]
    assert f"restoring step {synced}" in second.output
    steps = [step_of(line) for line in second.output.splitlines() if step_of(line) is not None]
    assert steps and min(steps) > synced, "training restarted from zero"
    assert HubStore(repo).latest_step() == 1200
    assert json.loads((tmp_path / "outputs/train/act-e2e/checkpoints/last/training_state/training_step.json").read_text())["step"] == 1200


def test_interrupted_hub_upload_keeps_the_previous_checkpoint(tmp_path, hub_server):
    store = HubStore(f"{HUB_USER}/atomic")
    for step in (1, 2):
        ckpt = tmp_path / f"c{step}"
        (ckpt / "training_state").mkdir(parents=True)
        (ckpt / "training_state/training_step.json").write_text(json.dumps({"step": step}))
        (ckpt / "model.bin").write_bytes(bytes([step]) * 1000)
    store.publish(tmp_path / "c1", 1)
    hub_server.drop_next_upload("commit")
    with pytest.raises(Exception):
        store.publish(tmp_path / "c2", 2)
    assert store.latest_step() == 1
    assert store.restore(tmp_path / "restored") == 1
    assert (tmp_path / "restored/model.bin").read_bytes() == bytes([1]) * 1000


@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_rendered_command_parses_with_lerobots_own_config(model_type, lerobot_bin):
    job = validate({"lerobot": {"version": "0.4.4"},  # the release of this environment (0.6.1: test_lerobot_current.py)
                    "dataset": {"repo_id": "me/data", "root": "/data/x"}, "policy": {"type": model_type, "repo_id": "me/p"},
                    "training": {"steps": 123, "batch_size": 5, "save_freq": 7}, "wandb": {"enable": False}})
    (command,) = render_commands(job, gpus=1, bin_dir=str(lerobot_bin))
    probe = (
        "import sys, json, draccus, lerobot.policies\n"
        "from lerobot.configs.train import TrainPipelineConfig\n"
        "cfg = draccus.parse(config_class=TrainPipelineConfig, args=sys.argv[1:])\n"
        "print(json.dumps({'type': cfg.policy.type, 'steps': cfg.steps, 'batch_size': cfg.batch_size, 'save_freq': cfg.save_freq,"
        " 'push': cfg.policy.push_to_hub, 'root': str(cfg.dataset.root), 'pretrained': str(cfg.policy.pretrained_path),"
        " 'dtype': getattr(cfg.policy, 'dtype', None), 'gc': getattr(cfg.policy, 'gradient_checkpointing', None)}))\n"
    )
    args = __import__("shlex").split(command)[1:]
    result = subprocess.run([str(lerobot_bin / "python"), "-c", probe, *args], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["type"] == MODEL_TYPES[model_type]
    assert (parsed["steps"], parsed["batch_size"], parsed["save_freq"], parsed["push"], parsed["root"]) == (123, 5, 7, False, "/data/x")
    if MODEL_TYPES[model_type] == "pi0":
        assert parsed["pretrained"] == "lerobot/pi0_base" and parsed["dtype"] == "bfloat16" and parsed["gc"] is True


def test_the_stores_newest_step_comes_from_the_hub_never_from_the_local_cache(tmp_path, hub_server, monkeypatch):
    """huggingface_hub answers a download from its cache when the Hub says the repo is not there (2.4 here, and 1.x,
    LeRobot 0.6's client): a stale manifest would make the runtime claim a resume from a checkpoint the store lacks."""
    from huggingface_hub import constants

    from emulators.hub_server import HubServer

    store = HubStore(f"{HUB_USER}/cached")
    ckpt = tmp_path / "c3"
    (ckpt / "training_state").mkdir(parents=True)
    (ckpt / "training_state/training_step.json").write_text(json.dumps({"step": 3}))
    store.publish(ckpt, 3)
    assert store.latest_step() == 3  # the manifest is now in the local cache
    fresh = HubServer(tmp_path / "fresh").start()  # the same user on a Hub that has no such repo
    fresh.add_token(HUB_TOKEN, HUB_USER)
    try:
        monkeypatch.setattr(constants, "ENDPOINT", fresh.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", fresh.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_ENDPOINT", fresh.url)
        assert store.latest_step() is None
    finally:
        fresh.stop()
