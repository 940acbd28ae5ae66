"""data.*: get a dataset ready: convert it to LeRobot's format (your script), push it to a private Hub repo."""

from __future__ import annotations

import sys

from invoke import Exit, task

from helpers.cli.common import friendly

PUSH_BATCH_FILES = 200  # files per Hub commit: progress is visible, and an interruption loses one batch at most


def passthrough(argv: list[str] | None = None) -> list[str]:
    """Arguments after `--` on the command line, as given (invoke itself keeps only a joined string)."""
    argv = sys.argv if argv is None else argv
    return argv[argv.index("--") + 1:] if "--" in argv else []


def convert_command(script: str, args: list[str], runner: str = "auto", python: str | None = None) -> list[str]:
    """`uv run SCRIPT ARGS` (the seed's way: the script's dependencies come from the uv project it sits in, or from
    its inline metadata), else `python SCRIPT ARGS`."""
    import shutil

    from helpers.errors import ConfigError

    if runner not in ("auto", "uv", "python"):
        raise ConfigError("--runner", f"'{runner}' is not a runner", "use auto, uv or python")
    if runner == "uv" or (runner == "auto" and shutil.which("uv")):
        return ["uv", "run", script, *args]
    return [python or sys.executable, script, *args]


@task(help={
    "script": "your converter script (e.g. examples/collab/convert_collab_data_to_lerobot.py)",
    "args": "its arguments as one string (or put them after `--`)",
    "runner": "auto (uv when installed), uv or python",
    "cwd": "folder to run in (e.g. your openpi checkout, so `uv run` uses its environment)",
    "dry_run": "print the command and stop",
})
@friendly
def convert(c, script, args=None, runner="auto", cwd=None, dry_run=False):
    """Run your dataset converter (seed 003, step 1): invoke data.convert --script S -- --repo_name local/collab ..."""
    import shlex
    import subprocess
    from pathlib import Path

    from helpers.console import say
    from helpers.errors import ConfigError

    where = Path(cwd or ".")
    if not (where / script).is_file() and not Path(script).is_file():
        raise ConfigError("--script", f"no script {script} (in {where})", "give the converter's path")
    argv = convert_command(script, shlex.split(args or "") + passthrough(), runner)
    say(("" if cwd is None else f"cd {shlex.quote(cwd)} && ") + shlex.join(argv))
    if dry_run:
        return
    code = subprocess.run(argv, cwd=cwd).returncode
    if code:
        raise Exit(code=code)


def dataset_files(root) -> list[tuple[str, int]]:
    """(path in the repo, size) of every file of a local dataset, hidden files and caches left out."""
    from pathlib import Path

    root = Path(root)
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            files.append((rel.as_posix(), path.stat().st_size))
    return files


def same_file(path, entry) -> bool:
    """A local file equals a file in the repo: size, then content hash (sha256 for LFS files, git's blob id else)."""
    import hashlib

    size = path.stat().st_size
    if entry.size != size:
        return False
    lfs = getattr(entry, "lfs", None)
    digest = hashlib.sha256() if lfs else hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    wanted = (lfs.sha256 if hasattr(lfs, "sha256") else lfs["sha256"]) if lfs else entry.blob_id
    return digest.hexdigest() == wanted


def push_dataset(path, repo_id: str, token: str | None = None, batch: int = PUSH_BATCH_FILES) -> dict:
    """Upload a LeRobot dataset folder to a PRIVATE Hub dataset repo, in commits of `batch` files with a rich
    progress bar over bytes. Files already there (same content) are skipped, so a second run resumes.
    Tags the upload with the dataset's codebase_version (LeRobot loads a dataset at that tag)."""
    import json
    from pathlib import Path

    from huggingface_hub import CommitOperationAdd, HfApi
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from helpers.console import console
    from helpers.errors import ConfigError

    root = Path(path)
    if not root.is_dir():
        raise ConfigError("--path", f"no folder {root}", "give the dataset folder (with meta/info.json)")
    info_file = root / "meta" / "info.json"
    if not info_file.is_file():
        raise ConfigError("--path", f"{root} has no meta/info.json", "is it a LeRobot dataset? convert it first (invoke data.convert)")
    version = json.loads(info_file.read_text()).get("codebase_version")
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)
    if not api.repo_info(repo_id, repo_type="dataset").private:
        raise ConfigError("--repo-id", f"{repo_id} exists and is public", "push to a new repo id, or make it private on the Hub first")
    present = {f.path: f for f in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True)
               if getattr(f, "size", None) is not None}
    files = dataset_files(root)
    todo = [(rel, size) for rel, size in files if not (rel in present and same_file(root / rel, present[rel]))]
    total = sum(size for _, size in todo)
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hub_bars_were_off = are_progress_bars_disabled()
    disable_progress_bars()  # one bar: ours, over the whole dataset
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    try:
        with Progress(*columns, console=console(), transient=False) as progress:
            bar = progress.add_task(f"push {repo_id}", total=total or 1, completed=0 if total else 1)
            for start in range(0, len(todo), batch):
                chunk = todo[start:start + batch]
                operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(root / rel)) for rel, _ in chunk]
                api.create_commit(repo_id, operations, repo_type="dataset",
                                  commit_message=f"Trainyard: dataset files {start + 1}-{start + len(chunk)} of {len(todo)}")
                progress.advance(bar, sum(size for _, size in chunk))
    finally:
        if not hub_bars_were_off:
            enable_progress_bars()
    if version:  # the tag must point at what was just pushed
        refs = api.list_repo_refs(repo_id, repo_type="dataset")
        tags = {t.name: t.target_commit for t in refs.tags}
        head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
        if version in tags and tags[version] != head:
            api.delete_tag(repo_id, tag=version, repo_type="dataset")
            del tags[version]
        if version not in tags:
            api.create_tag(repo_id, tag=version, repo_type="dataset")
    return {"repo_id": repo_id, "url": str(url), "uploaded": len(todo), "skipped": len(files) - len(todo), "tag": version}


@task(help={"path": "local LeRobot dataset folder (with meta/info.json)", "repo_id": "Hub dataset repo, ORG/NAME (private)",
            "env_file": "secrets file with HF_TOKEN (default .env)"})
@friendly
def push(c, path, repo_id, env_file=None):
    """Upload a local LeRobot dataset to a PRIVATE Hub dataset repo (resumable, with a progress bar)."""
    from helpers.console import say
    from helpers.workspace import current

    token = current().secrets.require("HF_TOKEN", "to upload the dataset")
    result = push_dataset(path, repo_id, token)
    tag = f", tagged {result['tag']}" if result["tag"] else ""
    say(f"{repo_id}: {result['uploaded']} files uploaded, {result['skipped']} already there{tag} (private)")
