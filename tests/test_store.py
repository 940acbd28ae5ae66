"""The runtime's checkpoint stores (helpers/runtime/store.py) against the local Hub, through the real client.

Uploads take the production path (Xet, hf_xet writing to the local Hub's CAS) unless a test says LFS.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures_hub import HUB_TOKEN, HUB_USER
from huggingface_hub import HfApi

from emulators.hub_server import HubServer
from helpers.runtime.store import HubStore

PAYLOAD = 200 * 1024  # bytes of "weights" per checkpoint


def _checkpoint(root: Path, step: int) -> Path:
    """A checkpoint in LeRobot's layout, with its own random weights (no two saves share content)."""
    ckpt = root / f"{step:06d}"
    (ckpt / "pretrained_model").mkdir(parents=True)
    (ckpt / "training_state").mkdir()
    (ckpt / "pretrained_model" / "model.safetensors").write_bytes(os.urandom(PAYLOAD))
    (ckpt / "training_state" / "training_step.json").write_text(json.dumps({"step": step}))
    return ckpt


def _writes(hub: HubServer) -> tuple[int, int]:
    """(Xet write tokens asked for, LFS PUTs) in the hub's request log."""
    return (sum("/xet-write-token/" in p for _, p in hub.request_log),
            sum(m == "PUT" and p.startswith("/_lfs/") for m, p in hub.request_log))


@pytest.mark.parametrize("path", ["xet", "lfs"])
def test_publish_and_restore(path: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    hub: HubServer = request.getfixturevalue("hub_server" if path == "xet" else "hub_lfs")
    store = HubStore(f"{HUB_USER}/ckpt")
    store.publish(_checkpoint(tmp_path, 10), 10)
    xet_tokens, lfs_puts = _writes(hub)
    assert (xet_tokens > 0, lfs_puts > 0) == (path == "xet", path == "lfs")
    assert store.latest_step() == 10
    assert store.restore(tmp_path / "restored") == 10
    weights = "pretrained_model/model.safetensors"
    assert (tmp_path / "restored" / weights).read_bytes() == (tmp_path / "000010" / weights).read_bytes()
    assert any("/xet-read-token/" in p for _, p in hub.request_log) == (path == "xet")  # read back through hf_xet


def test_cut_uploads_are_retried_or_leave_the_previous_checkpoint(hub_server: HubServer, tmp_path: Path) -> None:
    store = HubStore(f"{HUB_USER}/cut")
    store.publish(_checkpoint(tmp_path, 1), 1)
    hub_server.request_log.clear()
    hub_server.drop_next_upload("xet")  # the Xet transfer is cut before it starts: hf_xet asks again
    store.publish(_checkpoint(tmp_path, 2), 2)
    assert _writes(hub_server) == (2, 0) and store.latest_step() == 2
    hub_server.drop_next_upload("commit")  # the data is up, the commit is cut: nothing of step 3 is visible
    with pytest.raises(Exception):
        store.publish(_checkpoint(tmp_path, 3), 3)
    assert store.latest_step() == 2
    assert store.restore(tmp_path / "restored") == 2
    store.publish(tmp_path / "000003", 3)  # the next try goes through
    assert store.latest_step() == 3


@pytest.mark.parametrize("keep", [1, 3])
def test_keep_bounds_the_accounts_storage_over_20_saves(keep: int, hub_server: HubServer, tmp_path: Path) -> None:
    """Every save overwrites the same paths; without freeing, 20 saves hold 20 versions in history."""
    store = HubStore(f"{HUB_USER}/bounded")
    for step in range(1, 21):
        store.publish(_checkpoint(tmp_path, step), step, keep=keep)
        assert store.not_freed is None
        assert hub_server.storage_used(HUB_USER) <= keep * PAYLOAD + 4096, f"after save {step}"
    api = HfApi(endpoint=hub_server.url, token=HUB_TOKEN)
    branches = sorted(b.name for b in api.list_repo_refs(f"{HUB_USER}/bounded").branches if b.name != "main")
    assert branches == ([] if keep == 1 else [f"trainyard-{s:06d}" for s in (18, 19, 20)])
    assert store.restore(tmp_path / "restored") == 20
    if keep == 3:  # an older kept checkpoint is whole on its branch
        old = api.hf_hub_download(f"{HUB_USER}/bounded", "training_state/training_step.json", revision="trainyard-000018")
        assert json.loads(Path(old).read_text()) == {"step": 18}


def test_the_hub_refuses_a_commit_over_the_quota_with_its_403(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.set_storage_quota(HUB_USER, 3 * PAYLOAD)
    store = HubStore(f"{HUB_USER}/full")
    store.publish(_checkpoint(tmp_path, 1), 1)
    api = HfApi(endpoint=hub_server.url, token=HUB_TOKEN)
    api.upload_file(path_or_fileobj=os.urandom(PAYLOAD), path_in_repo="extra.bin", repo_id=f"{HUB_USER}/full")
    with pytest.raises(Exception) as refused:  # the history already holds two payloads: a third one passes 3
        api.upload_file(path_or_fileobj=os.urandom(2 * PAYLOAD), path_in_repo="more.bin", repo_id=f"{HUB_USER}/full")
    assert refused.value.response.status_code == 403
    assert "Private repository storage limit reached" in str(refused.value)
    assert store.latest_step() == 1
