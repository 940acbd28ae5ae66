"""The runtime as a host runs it: sync while training, kill, resume, atomic stores, limits, webhook, commands."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.bundle import render_commands
from helpers.config import validate
from helpers.runtime.job import JobDoc
from helpers.runtime.store import DirectoryStore
from helpers.runtime.trainers import OpenR1Trainer, runs_of, trainer_for
from tests.runtime_harness import TOY_TRAINER as TOY, RuntimeRun, toy_job
from tests.webhook import Webhook


@pytest.mark.slow  # real runtime processes for seconds each
def test_kill_mid_run_then_resume_continues_from_the_synced_step(tmp_path):
    data = toy_job(steps=300, save_freq=20)
    first = RuntimeRun(tmp_path, data, env={"TOY_STEP_SECONDS": "0.03"})
    first.read_until(lambda line: "synced checkpoint step" in line and int(line.split("step ")[1].split()[0]) >= 100)
    first.kill_everything()
    synced = DirectoryStore(tmp_path / "runs/toy/store").latest_step()
    assert synced is not None and 100 <= synced < 300
    shutil.rmtree(tmp_path / "outputs")  # the machine is gone, and its disk with it

    second = RuntimeRun(tmp_path, data, mode="resume", env={"TOY_STEP_SECONDS": "0"})
    assert second.wait() == 0, second.output
    assert f"restoring step {synced}" in second.output and f"resumed from step {synced}" in second.output
    assert "step:1 " not in second.output  # not from zero
    assert second.status()["synced_step"] == 300
    assert [e["event"] for e in second.events()][-1] == "end"


def test_auto_mode_resumes_from_local_checkpoints_when_restarted(tmp_path):
    data = toy_job(steps=80, save_freq=10)
    first = RuntimeRun(tmp_path, data, env={"TOY_STEP_SECONDS": "0.02"})
    first.read_until(lambda line: "synced checkpoint step" in line and int(line.split("step ")[1].split()[0]) >= 30)
    first.kill_everything()
    second = RuntimeRun(tmp_path, data, env={"TOY_STEP_SECONDS": "0"})  # e.g. a SLURM requeue on the same disk
    assert second.wait() == 0, second.output
    assert "resuming from step" in second.output and "restoring" not in second.output


def test_interrupted_directory_publish_leaves_the_previous_checkpoint(tmp_path):
    store = DirectoryStore(tmp_path / "store")
    small = tmp_path / "c1"
    (small / "training_state").mkdir(parents=True)
    (small / "training_state/training_step.json").write_text('{"step": 1}')
    store.publish(small, 1)
    big = tmp_path / "c2"
    (big / "pretrained_model").mkdir(parents=True)
    for i in range(400):
        (big / "pretrained_model" / f"shard{i}.bin").write_bytes(os.urandom(64 * 1024))
    # Publish in a child process and kill it mid-copy; retry until the kill lands inside the copy.
    code = f"from helpers.runtime.store import DirectoryStore; from pathlib import Path; DirectoryStore(Path('{tmp_path}/store')).publish(Path('{big}'), 2, keep=2)"
    for delay in (0.3, 0.2, 0.1, 0.05, 0.5):
        child = subprocess.Popen([os.sys.executable, "-c", code], cwd=Path(__file__).parents[1])
        try:
            child.wait(delay)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if list((tmp_path / "store").glob(".partial-2-*")):
            break
        shutil.rmtree(tmp_path / "store/checkpoints/000002", ignore_errors=True)
        (tmp_path / "store/latest.json").write_text('{"step": 1, "path": "checkpoints/000001"}')
    assert list((tmp_path / "store").glob(".partial-2-*")), "could not interrupt the copy"
    assert store.latest_step() == 1
    restored = tmp_path / "restored"
    assert store.restore(restored) == 1
    assert json.loads((restored / "training_state/training_step.json").read_text()) == {"step": 1}


@pytest.mark.slow  # real runtime processes for seconds each
def test_time_limit_stops_cleanly_with_a_final_sync(tmp_path):
    data = toy_job(steps=100000, save_freq=25, limits={"time_limit": 4})
    run = RuntimeRun(tmp_path, data, env={"TOY_STEP_SECONDS": "0.005"})
    assert run.wait(timeout=90) == 3, run.output
    assert "time limit or budget reached" in run.output
    status = run.status()
    assert status["state"] == "stopped" and status["synced_step"] is not None and status["synced_step"] >= 25
    assert DirectoryStore(tmp_path / "runs/toy/store").latest_step() == status["synced_step"]


def test_webhook_gets_seed_payload_and_never_a_secret(tmp_path):
    hook = Webhook()
    canary = "hf_" + "C4nary" * 6
    data = toy_job(steps=20, save_freq=10, notify={"webhook_url": hook.url},
                   command={"run": f"echo token is $HF_TOKEN && {toy_job()['command']['run']}"})
    run = RuntimeRun(tmp_path, data, secrets={"HF_TOKEN": canary}, env={"TOY_STEP_SECONDS": "0"})
    assert run.wait() == 0, run.output
    hook.close()
    events = [p["event"] for p in hook.events]
    assert events[0] == "start" and "checkpoint" in events and events[-1] == "end"
    assert set(hook.events[0]) >= {"event", "message", "timestamp", "stage", "project", "repo_id"}
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "runs").rglob("*") if p.is_file() and p.name != ".env")
    assert canary not in json.dumps(hook.events) and canary not in run.output and canary not in written
    assert "token is ***" in run.output
    assert oct((tmp_path / "runs/toy/.env").stat().st_mode & 0o777) == "0o600"


def doc_for(data: dict, machine=None) -> JobDoc:
    from helpers.bundle import job_document

    document = job_document(validate(data), machine or {"kind": "runpod"})
    return JobDoc(document["config"], document["derived"], document["machine"])


def test_multi_gpu_goes_through_accelerate_with_omp_threads():
    doc = doc_for({"dataset": {"repo_id": "a/b"}, "policy": {"type": "act"}, "accelerate": {"mixed_precision": "bf16"}})
    trainer = trainer_for(doc, runs_of(doc)[0], Path("/env/bin"), gpus=4)
    command = trainer.command(resume=False)
    assert command[:5] == ["/env/bin/accelerate", "launch", "--multi_gpu", "--num_processes=4", "--mixed_precision=bf16"]
    port = int(command[5].removeprefix("--main_process_port="))  # free on this machine now, not torch's 29500
    assert 0 < port < 65536 and command[6] == "/env/bin/lerobot-train"
    assert trainer.environment()["OMP_NUM_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 4))
    single = trainer_for(doc, runs_of(doc)[0], Path("/env/bin"), gpus=1).command(resume=False)
    assert single[0] == "/env/bin/lerobot-train"
    forced_off = doc_for({"dataset": {"repo_id": "a/b"}, "policy": {"type": "act"}, "accelerate": {"use": False}})
    assert trainer_for(forced_off, runs_of(forced_off)[0], Path("/b"), gpus=8).command(False)[0] == "/b/lerobot-train"


def test_pi0_preset_and_resume_command():
    job = validate({"dataset": {"repo_id": "a/b"}, "policy": {"type": "pi0"}})
    (command,) = render_commands(job, gpus=1, bin_dir="/e/bin")
    for expected in ("--policy.type=pi0", "--policy.pretrained_path=lerobot/pi0_base", "--policy.compile_model=true",
                     "--policy.gradient_checkpointing=true", "--policy.dtype=bfloat16", "--policy.push_to_hub=false"):
        assert expected in command
    doc = doc_for({"dataset": {"repo_id": "a/b"}, "policy": {"type": "pi0"}, "training": {"steps": 500}})
    resume = trainer_for(doc, runs_of(doc)[0], Path("/e/bin"), 1).command(resume=True)
    assert "--resume=true" in resume and "--steps=500" in resume
    assert any(a.startswith("--config_path=") and a.endswith("checkpoints/last/pretrained_model/train_config.json") for a in resume)


def test_openpi_resumes_instead_of_overwrite(tmp_path):
    data = {"framework": "openpi", "openpi": {"config_name": "pi05_libero", "exp_name": "e1", "checkpoint_base_dir": str(tmp_path)}}
    doc = doc_for(data)
    trainer = trainer_for(doc, runs_of(doc)[0], Path("/b"), 1)
    assert "--resume" not in trainer.command(resume=False) and "--overwrite" not in trainer.command(resume=False)
    (tmp_path / "pi05_libero/e1/1000").mkdir(parents=True)
    (tmp_path / "pi05_libero/e1/2000.orbax-checkpoint-tmp-1").mkdir()
    assert trainer.checkpoints() == [(1000, tmp_path / "pi05_libero/e1/1000")]
    assert "--resume" in trainer.command(resume=True)


@pytest.mark.parametrize("tags, rewards", [
    ({}, ["accuracy"]),
    ({"answer_tag": "<answer>", "answer_end_tag": "</answer>"}, ["accuracy", "format", "tag_count"]),
    ({"reasoning_tag": "<reason>", "reasoning_end_tag": "</reason>", "answer_tag": "<a>", "answer_end_tag": "</a>"}, ["accuracy", "reasoning_steps"]),
])
def test_open_r1_recipe_rewards_follow_the_tags(tmp_path, tags, rewards):
    import yaml

    doc = doc_for({"framework": "open_r1", "open_r1": {"model": "unsloth/gemma-2b", "dataset_name": "openai/gsm8k",
                                                        "hub_model_id": "me/gemma-grpo", **tags},
                   "job": {"output_dir": str(tmp_path / "out")}, "resources": {"gpu_count": 2}})
    trainer = trainer_for(doc, runs_of(doc)[0], Path("/b"), gpus=2)
    assert isinstance(trainer, OpenR1Trainer)
    trainer.prepare()
    recipe = yaml.safe_load(trainer.recipe_path().read_text())
    assert recipe["reward_funcs"] == rewards and recipe["hub_model_id"] == "me/gemma-grpo"
    assert recipe["model_name_or_path"] == "unsloth/gemma-2b" and recipe["output_dir"] == str(tmp_path / "out")
    assert tags.get("reasoning_tag", "<think>") in recipe["system_prompt"]
    command = trainer.command(resume=False)
    assert command[:2] == ["/b/accelerate", "launch"] and "--num_processes=2" in command and command[-1].startswith("--config=")


def test_several_runs_in_one_machine_like_seed000(tmp_path):
    same = toy_job(steps=40, save_freq=10)
    same["runs"] = [{"steps": 20, "output_dir": "outputs/train/a"}, {"steps": 40, "output_dir": "outputs/train/a"}]
    run = RuntimeRun(tmp_path, same, env={"TOY_STEP_SECONDS": "0"})
    assert run.wait() == 0, run.output
    assert "resumed from step 20" in run.output  # the second TRAIN continues the first
    assert DirectoryStore(tmp_path / "runs/toy/store").latest_step() == 40

    apart = toy_job(run_id="two", steps=40, save_freq=10)
    apart["runs"] = [{"steps": 20, "output_dir": "outputs/train/x"}, {"steps": 30, "output_dir": "outputs/train/y"}]
    run = RuntimeRun(tmp_path, apart, env={"TOY_STEP_SECONDS": "0"})
    assert run.wait() == 0, run.output
    assert "resumed from" not in run.output  # different trainings never share a checkpoint
    assert DirectoryStore(tmp_path / "runs/two/store/x").latest_step() == 20
    assert DirectoryStore(tmp_path / "runs/two/store/y").latest_step() == 30


@pytest.mark.slow  # real runtime processes for seconds each
def test_a_trainer_that_hangs_after_its_last_checkpoint_is_ended_and_the_run_is_done(tmp_path):
    """torch's gloo teardown can wait forever after training (LeRobot 0.6.1, 2 processes): a hung process must not
    keep a rented machine billing. The trainer here writes its last checkpoint, then never exits."""
    data = toy_job("hung", steps=20, save_freq=10, command={"run": f"{sys.executable} {TOY} && exec sleep 600"})
    started = time.monotonic()
    run = RuntimeRun(tmp_path, data, env={"TRAINYARD_EXIT_HANG_S": "3"})
    assert run.wait(timeout=120) == 0, run.output[-2000:]
    assert time.monotonic() - started < 60
    assert "saved its last checkpoint (step 20) 3s ago and has not exited: ending it" in run.output
    assert run.status()["state"] == "done"


def test_model_sharding_reaches_every_trainer_that_takes_it():
    """model.sharding (what the plan's advice sets) is what the trainers receive on several GPUs."""
    lerobot = doc_for({"dataset": {"repo_id": "a/b"}, "policy": {"type": "pi05"}, "model": {"sharding": "zero3"}})
    command = trainer_for(lerobot, runs_of(lerobot)[0], Path("/e"), gpus=4).command(resume=False)
    assert command[:6] == ["/e/accelerate", "launch", "--multi_gpu", "--num_processes=4", "--use_deepspeed", "--zero_stage=3"]
    assert trainer_for(lerobot, runs_of(lerobot)[0], Path("/e"), gpus=1).command(resume=False)[0] == "/e/lerobot-train"
    from helpers.runtime import environment

    assert ["deepspeed"] in environment.install_spec(lerobot.config)
    fsdp = doc_for({"dataset": {"repo_id": "a/b"}, "policy": {"type": "pi05"}, "model": {"sharding": "fsdp"}})
    assert "--use_fsdp" in trainer_for(fsdp, runs_of(fsdp)[0], Path("/e"), gpus=2).command(resume=False)

    command_job = doc_for({"framework": "command", "command": {"run": "python train.py"}, "model": {"sharding": "zero2"}})
    env = trainer_for(command_job, runs_of(command_job)[0], Path("/e"), gpus=2).environment()
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2"
    assert "ACCELERATE_USE_DEEPSPEED" not in trainer_for(command_job, runs_of(command_job)[0], Path("/e"), gpus=1).environment()

    r1 = doc_for({"framework": "open_r1", "open_r1": {"model": "Qwen/Qwen2.5-1.5B-Instruct"}, "model": {"sharding": "zero3"}})
    assert "--config_file=recipes/accelerate_configs/zero3.yaml" in trainer_for(r1, runs_of(r1)[0], Path("/e"), gpus=8).command(False)
    default = doc_for({"framework": "open_r1", "open_r1": {"model": "Qwen/Qwen2.5-1.5B-Instruct"}})
    assert "--config_file=recipes/accelerate_configs/zero2.yaml" in trainer_for(default, runs_of(default)[0], Path("/e"), gpus=8).command(False)

    pi = doc_for({"framework": "openpi", "openpi": {"config_name": "pi05_libero"}, "model": {"sharding": "fsdp"}})
    assert "--fsdp-devices=4" in trainer_for(pi, runs_of(pi)[0], Path("/e"), gpus=4).command(False)


@pytest.mark.slow  # a RunPod emulator and the real runtime
def test_a_pod_that_cannot_end_itself_raises_deadman_failed_until_it_is_gone(tmp_path, runpod_emulator, runpod_sdk):
    """What the pod's own key may do is documented nowhere: with it refused on REST v2 AND GraphQL, the runtime says
    "not armed" at start (an error event), and at the end raises `deadman_failed` on the webhook, in events.jsonl and
    in status.json, repeated, naming the pod, its price and `invoke cleanup`, while it keeps trying."""
    pod = runpod_sdk.create_pod(name="ty-stuck-abc123", image_name="runpod/pytorch", gpu_type_id="NVIDIA GeForce RTX 4090")
    runpod_emulator.pod_key_rest = runpod_emulator.pod_key_graphql = False
    hook = Webhook()
    data = toy_job(steps=10, save_freq=5, notify={"webhook_url": hook.url})
    env = {"TOY_STEP_SECONDS": "0", "RUNPOD_POD_ID": pod["id"], "RUNPOD_API_KEY": runpod_emulator.pod(pod["id"])["podKey"],
           "RUNPOD_REST_URL": runpod_emulator.url, "RUNPOD_GRAPHQL_URL": runpod_emulator.graphql_url}
    run = RuntimeRun(tmp_path, data, env=env, price_per_hour=0.69,
                     machine={"kind": "runpod", "terminate": True, "end_retry_s": 0, "alarm_every_s": 0.5})
    try:
        deadline = time.monotonic() + 120
        while sum(e["event"] == "deadman_failed" for e in hook.events) < 2 and time.monotonic() < deadline:
            assert run.process.poll() is None, run.output
            time.sleep(0.2)
        failed = [e for e in hook.events if e["event"] == "deadman_failed"]
        assert len(failed) >= 2 and failed[0]["level"] == "error"
        assert pod["id"] in failed[0]["message"] and "invoke cleanup" in failed[0]["message"] and "$0.69/h" in failed[0]["message"]
        assert [e["event"] for e in run.events()][:2] == ["start", "deadman_not_armed"]
        assert run.status()["deadman"].startswith("failed: pod ")
        assert runpod_emulator.pod(pod["id"])["status"] == "RUNNING"  # it bills: the alarm is all the pod has left
    finally:
        run.kill_everything()
        hook.close()


@pytest.mark.slow  # a real runtime process uploading to the local Hub
def test_a_full_hub_storage_is_an_alarm_with_the_steps_at_risk(tmp_path, hub_server):
    """The Hub refuses every upload (403, storage full): each failed sync is a `sync_failed` event on the webhook,
    status.json says so with the steps at risk, `local.status` shows them, and the fix is named — not a log line."""
    from fixtures_hub import HUB_TOKEN, HUB_USER

    from helpers.backends.base import backend
    from helpers.workspace import opened

    hub_server.set_storage_quota(HUB_USER, 16 * 1024)  # less than one checkpoint
    hook = Webhook()
    data = toy_job(steps=30, save_freq=10, checkpoint={"store": f"hf://{HUB_USER}/full"},
                   notify={"webhook_url": hook.url})
    run = RuntimeRun(tmp_path, data, secrets={"HF_TOKEN": HUB_TOKEN},
                     env={"TOY_STEP_SECONDS": "0.02", "TOY_PAYLOAD_KB": "64"})
    assert run.wait() == 0, run.output
    hook.close()
    failed = [e for e in hook.events if e["event"] == "sync_failed"]
    assert failed and failed[-1]["step"] == 30 and failed[-1]["steps_at_risk"] == 30, hook.events
    assert failed[-1]["level"] == "error" and "checkpoint.keep" in failed[-1]["fix"]
    assert "Private repository storage limit reached" in failed[-1]["error"]
    status = run.status()
    assert status["synced_step"] is None and "30 steps at risk" in status["sync_failed"]
    with opened(env_file=None, runs_dir=tmp_path / "runs"):
        (row,) = backend("local").status()
    assert row[-1].startswith("30 (SYNC FAILED")
