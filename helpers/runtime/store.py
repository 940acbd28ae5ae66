"""Checkpoint stores: a directory (the embedded default) or a private Hub model repo (`hf://org/repo`).

Both are atomic: a reader sees a whole checkpoint or the previous one, never half of one.
- Directory: copy into a hidden staging dir, rename into place, then replace `latest.json`.
- Hub: every file of the checkpoint plus the manifest `trainyard.json` go up in ONE commit.
The repo layout is seed 001's (`pretrained_model/`, `training_state/` at the root), so its resume still works.

A Hub store overwrites the same paths at every save, and every old version stays in the branch's history, counting
against the account's private storage until the Hub refuses uploads (403). Deleting files would not free them (the
history still holds them); squashing the history does [DOC: storage-limits, HfApi.super_squash_history]. So after
each save the store squashes `main` to one commit, and keeps the `checkpoint.keep` newest checkpoints: the newest on
`main`, each of them also on its own one-commit branch `trainyard-<step>`; older such branches are deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

MANIFEST = "trainyard.json"
STORAGE_FULL = "storage limit reached"  # in the Hub's 403 once an account's private storage is full
SYNC_FIX_STORAGE = ("the Hub account's private storage is full: keep fewer checkpoints (checkpoint.keep: 1 frees older "
                    "versions at every save), free space at https://huggingface.co/settings/storage, or upgrade the plan")


def open_store(spec: str, base: Path | None = None, prefix: str = "") -> "DirectoryStore | HubStore":
    """`prefix` keeps the runs of one job apart when they train different things into one store."""
    if spec.startswith("hf://"):
        return HubStore(spec.removeprefix("hf://").strip("/"), prefix)
    path = Path(spec)
    path = path if path.is_absolute() or base is None else base / path
    return DirectoryStore(path / prefix if prefix else path)


def checkpoint_files(step_dir: Path) -> list[tuple[Path, str]]:
    """(absolute file, relative path) for every file under a checkpoint, following symlinks."""
    root = Path(os.path.realpath(step_dir))
    files = []
    for dirpath, _dirs, names in os.walk(root, followlinks=True):
        for name in sorted(names):
            path = Path(dirpath) / name
            files.append((path, path.relative_to(root).as_posix()))
    return files


class DirectoryStore:
    not_freed = None  # pruning a directory cannot fail quietly

    def __init__(self, root: Path):
        self.root = root
        self.describe = str(root)

    def publish(self, step_dir: Path, step: int, keep: int = 1) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "checkpoints").mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".partial-{step}-", dir=self.root))
        for source, rel in checkpoint_files(step_dir):
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        (staging / MANIFEST).write_text(json.dumps({"step": step}))
        final = self.root / "checkpoints" / f"{step:06d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(staging, final)
        _write_atomic(self.root / "latest.json", json.dumps({"step": step, "path": f"checkpoints/{step:06d}"}))
        self._prune(keep, step)

    def _prune(self, keep: int, newest: int) -> None:
        steps = sorted(int(p.name) for p in (self.root / "checkpoints").iterdir() if p.name.isdigit())
        for old in [s for s in steps if s != newest][: max(0, len(steps) - keep)]:
            shutil.rmtree(self.root / "checkpoints" / f"{old:06d}", ignore_errors=True)

    def latest_step(self) -> int | None:
        try:
            return int(json.loads((self.root / "latest.json").read_text())["step"])
        except (OSError, ValueError, KeyError):
            return None

    def restore(self, dest: Path) -> int | None:
        """Copy the newest complete checkpoint into `dest` (which must not exist); return its step."""
        step = self.latest_step()
        if step is None:
            return None
        shutil.copytree(self.root / "checkpoints" / f"{step:06d}", dest)
        (dest / MANIFEST).unlink(missing_ok=True)
        return step


class HubStore:
    def __init__(self, repo_id: str, prefix: str = ""):
        self.repo_id = repo_id
        self.prefix = f"{prefix.strip('/')}/" if prefix else ""
        self.describe = f"hf://{repo_id}/{self.prefix}".rstrip("/")
        self._created = False
        self.not_freed: str | None = None  # why the last save could not free older versions (retried next save)

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi()

    def publish(self, step_dir: Path, step: int, keep: int = 1) -> None:
        from huggingface_hub import CommitOperationAdd

        api = self._api()
        if not self._created:
            api.create_repo(self.repo_id, repo_type="model", private=True, exist_ok=True)
            self._created = True
        operations = [CommitOperationAdd(path_in_repo=self.prefix + rel, path_or_fileobj=str(path)) for path, rel in checkpoint_files(step_dir)]
        manifest = json.dumps({"step": step}).encode()
        operations.append(CommitOperationAdd(path_in_repo=self.prefix + MANIFEST, path_or_fileobj=manifest))
        api.create_commit(self.repo_id, operations=operations, commit_message=f"Trainyard checkpoint step {step}", repo_type="model")
        try:
            self._free_older(api, step, keep)
            self.not_freed = None
        except Exception as exc:  # noqa: BLE001 - the checkpoint is safe; the next save squashes again
            self.not_freed = f"{type(exc).__name__}: {exc}"

    def _branch(self, step: int) -> str:
        return "trainyard-" + (self.prefix.strip("/").replace("/", "-") + "-" if self.prefix else "") + f"{step:06d}"

    def _free_older(self, api, step: int, keep: int) -> None:
        api.super_squash_history(self.repo_id, branch="main", commit_message=f"Trainyard checkpoint step {step}")
        if keep < 2:
            return
        api.create_branch(self.repo_id, branch=self._branch(step), exist_ok=True)
        base = self._branch(0)[:-6]
        ours = sorted(b.name for b in api.list_repo_refs(self.repo_id).branches
                      if b.name.startswith(base) and b.name[len(base):].isdigit())
        for old in ours[:-keep]:
            api.delete_branch(self.repo_id, branch=old)

    def latest_step(self) -> int | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError

        try:  # from the Hub, never the local cache: huggingface_hub answers from a cached copy when the repo is not
            # (or no longer) on the Hub, and a stale manifest would claim a resume from a checkpoint the store lacks
            path = hf_hub_download(self.repo_id, self.prefix + MANIFEST, repo_type="model", force_download=True)
        except (EntryNotFoundError, RepositoryNotFoundError):
            return None
        except ValueError as exc:  # "Force download failed" wraps the Hub's answer (huggingface_hub >= 1)
            if isinstance(exc.__cause__, (EntryNotFoundError, RepositoryNotFoundError)):
                return None
            raise
        return int(json.loads(Path(path).read_text())["step"])

    def restore(self, dest: Path) -> int | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import RepositoryNotFoundError

        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=dest.parent))
        try:
            snapshot_download(self.repo_id, repo_type="model", local_dir=str(staging),
                              allow_patterns=[self.prefix + "*"] if self.prefix else None)
        except RepositoryNotFoundError:
            shutil.rmtree(staging)
            return None
        shutil.rmtree(staging / ".cache", ignore_errors=True)
        found = staging / self.prefix if self.prefix else staging
        step = _step_of(found)
        if step is None:
            shutil.rmtree(staging)
            return None
        (found / MANIFEST).unlink(missing_ok=True)
        os.rename(found, dest)
        shutil.rmtree(staging, ignore_errors=True)
        return step


def _step_of(checkpoint: Path) -> int | None:
    for name in (MANIFEST, "training_state/training_step.json"):
        try:
            return int(json.loads((checkpoint / name).read_text())["step"])
        except (OSError, ValueError, KeyError):
            continue
    return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
