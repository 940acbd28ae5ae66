"""Partial uploads: a checkpoint upload cut at a random point never becomes the checkpoint a resume loads.

The real runtime bundle (tests/runtime_harness.py) trains tests/toy_trainer.py and syncs to the local Hub (the real
huggingface_hub client) or to a directory store, while:

  * the Hub cuts the next upload (hub_server.drop_next_upload: the Xet transfer's token request, which hf_xet repeats,
    or the commit half-way, which the client does not: a `sync_failed` alarm, retried with the next checkpoint), again
    and again at random moments — the run still finishes, and after every cut the store's newest checkpoint is
    complete and loadable;
  * the runtime, trainer and uploader are SIGKILLed together (a spot kill) in the middle of a publish — right after
    the Hub saw the upload's first request, or while the directory store's copy exists only as its staging folder.
    Then a resume in an empty folder (outputs lost) restores exactly the store's newest complete checkpoint (the
    manifest's step, its training_state step and its whole model file) and finishes the run.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from tests.fixtures_hub import HUB_TOKEN, HUB_USER
from tests.reliability.harness import store_check
from tests.runtime_harness import RuntimeRun, toy_job

pytestmark = pytest.mark.slow

SEED = 20260


def job(run_id: str, steps: int, store: str, save_freq: int = 10) -> dict:
    return toy_job(run_id=run_id, steps=steps, save_freq=save_freq, checkpoint={"store": store, "upload_poll_seconds": 0.1})


def publishes(hub, repo: str) -> int:
    prefix = f"/api/models/{repo}/preupload"
    return sum(1 for method, path in list(hub.request_log) if method == "POST" and path.startswith(prefix))


def test_cut_uploads_never_replace_a_complete_checkpoint(tmp_path, hub_server, capsys):
    rng = random.Random(SEED)
    repo = f"{HUB_USER}/cut-ckpt"
    run = RuntimeRun(tmp_path / "a", job("cut", 80, f"hf://{repo}"), secrets={"HF_TOKEN": HUB_TOKEN},
                     env={"TOY_STEP_SECONDS": "0.04", "TOY_PAYLOAD_KB": "256"})
    cuts = []
    kinds = ["commit", "xet", "commit", "any"]
    rng.shuffle(kinds)
    for target in kinds:
        time.sleep(rng.uniform(0.2, 0.6))
        hub_server.drop_next_upload(target)
        cuts.append(target)
        time.sleep(0.4)
        check = store_check("cut", payload_kb=256, repo=repo)
        assert check["ok"], check
    assert run.wait(120) == 0, run.output[-3000:]
    check = store_check("cut", payload_kb=256, repo=repo)
    assert check["ok"] and check["latest"] == 80, check
    with capsys.disabled():
        failed = run.output.count("SYNC FAILED")
        print(f"\npartial uploads: {len(cuts)} cuts ({', '.join(cuts)}); {failed} publishes failed and were retried", flush=True)


@pytest.mark.parametrize("store_kind", ["hub", "directory"])
def test_spot_kill_during_publish_then_resume_loads_only_complete_checkpoints(tmp_path, hub_server, store_kind):
    rng = random.Random(SEED + (store_kind == "directory"))
    kb = 4096 if store_kind == "hub" else 16384
    store = f"hf://{HUB_USER}/kill-{store_kind}-ckpt" if store_kind == "hub" else str(tmp_path / "store")
    repo = f"{HUB_USER}/kill-{store_kind}-ckpt"
    run_id = f"kill-{store_kind}"
    steps = 60
    env = {"TOY_STEP_SECONDS": "0.03", "TOY_PAYLOAD_KB": str(kb)}
    for attempt in range(3):
        workdir = tmp_path / f"attempt-{attempt}"  # a new machine each time: the outputs of the last one are gone
        run = RuntimeRun(workdir, job(run_id, steps, store), secrets={"HF_TOKEN": HUB_TOKEN}, env=env)
        before = latest_step(store_kind, store)
        if attempt:
            line = run.read_until(lambda line: "resuming from step" in line or "] starting: " in line, timeout=60)
            assert f"resuming from step {before}" in line, (before, line)
            assert f"restoring step {before} from" in run.output
            assert_restored_whole(workdir, run_id, before, kb)
        wanted = rng.randint(1 if attempt else 2, 3)  # kill during the wanted-th publish of this attempt
        if store_kind == "hub":
            seen = publishes(hub_server, repo)
            deadline = time.monotonic() + 60
            while publishes(hub_server, repo) < seen + wanted and time.monotonic() < deadline and run.process.poll() is None:
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.02))
        else:
            root = Path(store)
            deadline = time.monotonic() + 60
            left_over = staging(root)  # a killed copy leaves its staging folder behind: not this attempt's
            seen: set[str] = set()
            while len(seen) < wanted and time.monotonic() < deadline and run.process.poll() is None:
                seen |= staging(root) - left_over
                time.sleep(0.001)
        assert run.process.poll() is None, "the run ended before the kill: " + run.output[-2000:]
        run.kill_everything()
        after = latest_step(store_kind, store)
        assert after is not None and (before is None or after >= before)
        if store_kind == "hub":
            check = store_check(run_id, payload_kb=kb, repo=repo)
            assert check["ok"], check
        else:
            assert_directory_complete(Path(store), kb)
    final = RuntimeRun(tmp_path / "final", job(run_id, steps, store), secrets={"HF_TOKEN": HUB_TOKEN}, env=env)
    assert final.wait(120) == 0, final.output[-3000:]
    resumed = None
    for line in final.output.splitlines():
        if "resuming from step" in line:
            resumed = int(line.split("resuming from step ")[1].split(":")[0])
    assert resumed is not None and resumed >= 10, final.output[-2000:]
    assert_restored_whole(tmp_path / "final", run_id, resumed, kb)
    assert latest_step(store_kind, store) == steps


def staging(root: Path) -> set[str]:
    try:
        return {p.name for p in root.iterdir() if p.name.startswith(".partial-")}
    except FileNotFoundError:
        return set()


def latest_step(kind: str, store: str) -> int | None:
    from helpers.runtime.store import DirectoryStore, HubStore

    return HubStore(store[5:]).latest_step() if kind == "hub" else DirectoryStore(Path(store)).latest_step()


def assert_directory_complete(root: Path, kb: int) -> None:
    latest = json.loads((root / "latest.json").read_text())
    checkpoint = root / latest["path"]
    assert json.loads((checkpoint / "trainyard.json").read_text())["step"] == latest["step"]
    assert json.loads((checkpoint / "training_state" / "training_step.json").read_text())["step"] == latest["step"]
    assert (checkpoint / "pretrained_model" / "model.safetensors").stat().st_size == kb * 1024


def assert_restored_whole(workdir: Path, run_id: str, step: int, kb: int) -> None:
    """What the resume restored into the trainer's checkpoint folder is that step, whole."""
    restored = workdir / "outputs" / "train" / run_id / "checkpoints" / f"{step:06d}"
    assert json.loads((restored / "training_state" / "training_step.json").read_text())["step"] == step
    assert (restored / "pretrained_model" / "model.safetensors").stat().st_size == kb * 1024
