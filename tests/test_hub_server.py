"""The local Hub (emulators/hub_server.py) driven by the REAL huggingface_hub clients.

In-process tests use the .venv client (2.x); `test_client_0353_*` runs huggingface_hub 0.35.3 (what LeRobot 0.4.4
and the GPU host use) in its own venv against the same server.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fixtures_hub import HUB_TOKEN, HUB_USER
from huggingface_hub import CommitOperationAdd, CommitOperationCopy, CommitOperationDelete, HfApi
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from emulators.hub_server import HubServer

BIG = 10 * 1024 * 1024 + 4096  # just over the Hub's 10 MB regular-file limit -> LFS


def _folder(root: Path, tag: str, big: bool = True) -> dict[str, bytes]:
    """Write a small checkpoint-like folder; returns {relative path: bytes}."""
    files = {
        "config.json": json.dumps({"tag": tag}).encode(),
        "README.md": f"---\nlicense: mit\n---\n# {tag}\n".encode(),
        "logs/train.txt": f"loss for {tag}\n".encode() * 10,
    }
    if big:
        files["weights/big.bin"] = tag.encode().ljust(16, b".") * (BIG // 16)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _api(hub: HubServer, token=HUB_TOKEN) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def _http(hub: HubServer, path: str, method: str = "GET", headers: dict | None = None):
    """(status, headers, body) of a raw request, errors included."""
    req = urllib.request.Request(hub.url + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


@pytest.mark.parametrize("path", ["xet", "lfs"])
def test_private_upload_roundtrip(path: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Xet is what huggingface_hub uses whenever hf_xet is installed (production); LFS is for clients without it.
    Both upload, and both read back: Xet files through hf_xet from the CAS, LFS files over HTTP."""
    hub_server: HubServer = request.getfixturevalue("hub_server" if path == "xet" else "hub_lfs")
    api = _api(hub_server)
    assert api.whoami()["name"] == HUB_USER
    url = api.create_repo("policy", private=True)  # no namespace: the token owner's
    assert url.repo_id == f"{HUB_USER}/policy"
    repo_id = url.repo_id
    assert api.create_repo(repo_id, private=True, exist_ok=True).repo_id == repo_id

    src = tmp_path / "src"
    files = _folder(src, "v1")
    commit = api.upload_folder(repo_id=repo_id, folder_path=src, commit_message="step 1")

    big_sha = hashlib.sha256(files["weights/big.bin"]).hexdigest()
    lfs_put, write_token = ("PUT", f"/_lfs/{big_sha}"), ("GET", f"/api/models/{repo_id}/xet-write-token/main")
    assert (lfs_put in hub_server.request_log, write_token in hub_server.request_log) == (path == "lfs", path == "xet")
    assert bool(list((hub_server.root / "cas").rglob("*.mdb"))) == (path == "xet")  # the CAS got a shard
    assert hub_server.blob_path(big_sha).read_bytes() == files["weights/big.bin"]  # stored content-addressed
    assert set(api.list_repo_files(repo_id)) == set(files) | {".gitattributes"}

    info = api.model_info(repo_id, files_metadata=True)
    assert (info.sha, info.private) == (commit.oid, True)
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["weights/big.bin"].lfs.sha256 == big_sha and siblings["weights/big.bin"].size == BIG
    assert siblings["config.json"].lfs is None

    hub_server.request_log.clear()
    local = snapshot_download(repo_id, endpoint=hub_server.url, cache_dir=tmp_path / "fresh")
    got = _tree_bytes(Path(local))
    assert {k: got[k] for k in files} == files
    read_token = ("GET", f"/api/models/{repo_id}/xet-read-token/{commit.oid}")
    assert (read_token in hub_server.request_log) == (path == "xet")  # read back through hf_xet

    # Private means invisible: anonymous (401) and other users (404) both get RepositoryNotFoundError.
    hub_server.add_token("hf_other", "someone-else")
    for token in (False, "hf_other"):
        with pytest.raises(RepositoryNotFoundError):
            _api(hub_server, token).model_info(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(repo_id, "config.json", endpoint=hub_server.url, token=token,
                            cache_dir=tmp_path / "anon")
    # A bad token is an auth error, not a missing repo.
    with pytest.raises(HfHubHTTPError) as err:
        _api(hub_server, "hf_wrong").model_info(repo_id)
    assert not isinstance(err.value, RepositoryNotFoundError) and err.value.response.status_code == 401


def test_same_upload_twice_is_a_no_op(hub_server: HubServer, tmp_path: Path) -> None:
    api = _api(hub_server)
    repo_id = api.create_repo(f"{HUB_USER}/noop").repo_id
    _folder(tmp_path / "src", "same")
    first = api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "src")
    hub_server.request_log.clear()
    second = api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "src")
    assert second.oid == first.oid
    assert not [p for m, p in hub_server.request_log if p.endswith("/commit/main") or m == "PUT"]


def test_revisions_tags_branches_on_a_dataset(hub_server: HubServer, tmp_path: Path) -> None:
    api = _api(hub_server)
    repo_id = api.create_repo(f"{HUB_USER}/episodes", repo_type="dataset").repo_id
    kw = {"repo_id": repo_id, "repo_type": "dataset"}
    v1 = api.upload_file(path_or_fileobj=b"one", path_in_repo="meta/info.json", **kw).oid
    api.create_tag(tag="v3.0", revision=v1, **kw)
    v2 = api.upload_file(path_or_fileobj=b"two", path_in_repo="meta/info.json", **kw).oid
    api.create_branch(branch="old", revision=v1, **kw)

    refs = api.list_repo_refs(**kw)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": v2, "old": v1}
    assert {t.name: t.target_commit for t in refs.tags} == {"v3.0": v1}
    commits = api.list_repo_commits(**kw)
    assert [c.commit_id for c in commits][:2] == [v2, v1] and commits[-1].title == "initial commit"

    def read(rev: str) -> bytes:
        return Path(hf_hub_download(repo_id, "meta/info.json", repo_type="dataset", revision=rev,
                                    endpoint=hub_server.url, cache_dir=tmp_path / "c")).read_bytes()

    assert [read(r) for r in ("v3.0", v1, "old", "main", v2)] == [b"one", b"one", b"one", b"two", b"two"]
    with pytest.raises(RevisionNotFoundError):
        read("no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", repo_type="dataset", endpoint=hub_server.url,
                        cache_dir=tmp_path / "c")
    with pytest.raises(HfHubHTTPError):  # 409: the tag exists
        api.create_tag(tag="v3.0", **kw)

    tree = {e.path: e for e in api.list_repo_tree(recursive=True, **kw)}
    assert set(tree) == {".gitattributes", "meta", "meta/info.json"}
    paths = api.get_paths_info(paths=["meta", "meta/info.json", "nope"], **kw)
    assert sorted(type(p).__name__ for p in paths) == ["RepoFile", "RepoFolder"]


def test_delete_and_copy_operations(hub_server: HubServer, tmp_path: Path) -> None:
    api = _api(hub_server)
    repo_id = api.create_repo(f"{HUB_USER}/ops").repo_id
    files = _folder(tmp_path / "src", "ops")
    api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "src")
    api.create_commit(repo_id, commit_message="reshuffle", operations=[
        CommitOperationCopy("weights/big.bin", "last/big.bin"),  # LFS copy: no bytes re-sent
        CommitOperationCopy("config.json", "last/config.json"),
        CommitOperationDelete("logs/"),
        CommitOperationDelete("README.md"),
        CommitOperationAdd("note.txt", b"hello"),
    ])
    assert set(api.list_repo_files(repo_id)) == {
        ".gitattributes", "config.json", "weights/big.bin", "last/big.bin", "last/config.json", "note.txt"}
    copied = hf_hub_download(repo_id, "last/big.bin", endpoint=hub_server.url, cache_dir=tmp_path / "c")
    assert Path(copied).read_bytes() == files["weights/big.bin"]
    with pytest.raises(EntryNotFoundError, match="doesn't exist"):
        api.delete_file("never-there.txt", repo_id)


def test_gated_repo(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.commit_files("base-org/gated", {"config.json": b"{}"})
    hub_server.set_gated("base-org/gated", allowed_users=("friend",))
    hub_server.add_token("hf_friend", "friend", write=False)
    api = _api(hub_server)
    assert api.model_info("base-org/gated").gated == "manual"  # metadata stays public

    for token in (HUB_TOKEN, False):  # 403 for a user not on the list, 401 anonymous
        with pytest.raises(GatedRepoError):
            hf_hub_download("base-org/gated", "config.json", endpoint=hub_server.url, token=token,
                            cache_dir=tmp_path / "c")
        with pytest.raises(GatedRepoError):
            _api(hub_server, token).auth_check("base-org/gated")
    _api(hub_server, "hf_friend").auth_check("base-org/gated")
    path = hf_hub_download("base-org/gated", "config.json", endpoint=hub_server.url, token="hf_friend",
                           cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == b"{}"
    with pytest.raises(HfHubHTTPError):  # read-only token: no writes
        _api(hub_server, "hf_friend").upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="base-org/gated")


def test_missing_repo(hub_server: HubServer, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        _api(hub_server).model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "x.json", endpoint=hub_server.url, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        _api(hub_server).dataset_info(f"{HUB_USER}/nothing")


def test_safetensors_metadata(hub_server: HubServer) -> None:
    hub_server.seed_safetensors_model(f"{HUB_USER}/tiny", {
        "embed.weight": ("BF16", (32, 8)), "head.weight": ("F32", (8, 4)), "head.bias": ("F32", (4,))})
    api = _api(hub_server)
    meta = api.get_safetensors_metadata(f"{HUB_USER}/tiny")
    assert meta.parameter_count == {"BF16": 256, "F32": 36}
    assert api.model_info(f"{HUB_USER}/tiny").safetensors.total == 292
    assert any(m == "GET" and p.endswith("/resolve/main/model.safetensors") for m, p in hub_server.request_log)


def test_resolve_headers_and_ranges(hub_server: HubServer) -> None:
    sha = hub_server.commit_files("acme/raw", {"a.txt": b"0123456789", "w.safetensors": b"\0" * 64})
    status, headers, body = _http(hub_server, "/acme/raw/resolve/main/a.txt", "HEAD")
    assert status == 200 and headers["X-Repo-Commit"] == sha and headers["Content-Length"] == "10"
    assert headers["ETag"].strip('"') == hashlib.sha1(b"blob 10\x000123456789").hexdigest()
    status, headers, _ = _http(hub_server, "/acme/raw/resolve/main/w.safetensors", "HEAD")
    assert headers["X-Linked-Size"] == "64" and headers["X-Linked-Etag"] == headers["ETag"]
    assert _http(hub_server, "/acme/raw/resolve/main/a.txt", headers={"Range": "bytes=2-4"})[::2] == (206, b"234")
    assert _http(hub_server, "/acme/raw/resolve/main/a.txt", headers={"Range": "bytes=7-"})[::2] == (206, b"789")
    status, headers, _ = _http(hub_server, "/acme/raw/resolve/main/a.txt", headers={"Range": "bytes=50-"})
    assert status == 416 and headers["Content-Range"] == "bytes */10"
    status, headers, _ = _http(hub_server, f"/acme/raw/resolve/{sha}/nope.txt")
    assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"]) == (404, "EntryNotFound", sha)


def test_dropped_commit_keeps_previous_revision(hub_server: HubServer, tmp_path: Path) -> None:
    api = _api(hub_server)
    repo_id = api.create_repo(f"{HUB_USER}/atomic").repo_id
    v1_files = _folder(tmp_path / "v1", "v1")
    v1 = api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "v1").oid

    _folder(tmp_path / "v2", "v2")
    (tmp_path / "v2/extra.txt").write_text("new in v2")
    v2 = [CommitOperationAdd(str(p.relative_to(tmp_path / "v2")), p) for p in (tmp_path / "v2").rglob("*") if p.is_file()]
    hub_server.drop_next_upload("commit")
    with pytest.raises(Exception) as err:  # one commit, as the checkpoint store makes it (upload_folder retries)
        api.create_commit(repo_id, operations=v2, commit_message="v2")
    assert not isinstance(err.value, HfHubHTTPError), err.value  # a broken connection, not an HTTP reply

    assert api.model_info(repo_id).sha == v1
    assert len(api.list_repo_commits(repo_id)) == 2  # initial + v1
    local = Path(snapshot_download(repo_id, endpoint=hub_server.url, cache_dir=tmp_path / "fresh"))
    assert _tree_bytes(local) == {**v1_files, ".gitattributes": _tree_bytes(local)[".gitattributes"]}

    # The same upload goes through once the network behaves.
    assert api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "v2").oid != v1
    assert "extra.txt" in api.list_repo_files(repo_id)


def test_dropped_lfs_put_is_retried_by_the_client(hub_lfs: HubServer, tmp_path: Path) -> None:
    """A client without Xet: the classic LFS batch path, as the Hub still accepts."""
    hub_server = hub_lfs
    api = _api(hub_server)
    repo_id = api.create_repo(f"{HUB_USER}/retry-lfs").repo_id
    files = _folder(tmp_path / "src", "lfs")
    hub_server.drop_next_upload("lfs")
    api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "src")
    puts = [p for m, p in hub_server.request_log if m == "PUT"]
    assert len(puts) == 2 and puts[0] == puts[1]  # cut once, re-sent whole
    got = hf_hub_download(repo_id, "weights/big.bin", endpoint=hub_server.url, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == files["weights/big.bin"]


def test_fail_next(hub_server: HubServer) -> None:
    api = _api(hub_server)
    repo_id = api.create_repo(f"{HUB_USER}/flaky").repo_id
    hub_server.fail_next(1, 500)  # repo_info is a plain GET: the client raises
    with pytest.raises(HfHubHTTPError) as err:
        api.model_info(repo_id)
    assert err.value.response.status_code == 500
    hub_server.fail_next(1, 503)  # preupload goes through http_backoff: retried after 1 s
    hub_server.request_log.clear()
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo_id)
    assert [p for _, p in hub_server.request_log].count(f"/api/models/{repo_id}/preupload/main") == 2
    assert api.list_repo_files(repo_id) == [".gitattributes", "config.json"]


def test_readers_never_see_half_a_commit(hub_server: HubServer) -> None:
    api = _api(hub_server)
    repo_id = api.create_repo(f"{HUB_USER}/race").repo_id
    names = [f"part-{i}.txt" for i in range(6)]
    seen: list[set[str]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            status, _, body = _http(hub_server, f"/api/models/{repo_id}/tree/main?recursive=true",
                                    headers={"Authorization": f"Bearer {HUB_TOKEN}"})
            assert status == 200
            seen.append({e["oid"] for e in json.loads(body) if e["path"] in names})

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for gen in range(8):
            api.create_commit(repo_id, commit_message=f"gen {gen}",
                              operations=[CommitOperationAdd(n, f"gen {gen}".encode()) for n in names])
    finally:
        done.set()
        reader.join()
    assert len(seen) > 8 and all(len(oids) <= 1 for oids in seen)  # every listing is one generation only


def test_state_survives_a_restart(hub_server: HubServer, tmp_path: Path) -> None:
    sha = hub_server.commit_files(f"{HUB_USER}/kept", {"a.txt": b"kept"})
    hub_server.stop()
    with HubServer(hub_server.root) as again:
        again.add_token(HUB_TOKEN, HUB_USER)
        assert _api(again).model_info(f"{HUB_USER}/kept").sha == sha
        path = hf_hub_download(f"{HUB_USER}/kept", "a.txt", endpoint=again.url, cache_dir=tmp_path / "c")
        assert Path(path).read_bytes() == b"kept"


def test_cli_prints_endpoint_and_serves(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.hub_server", "--root", str(tmp_path), "--token", "hf_cli",
         "--user", "cli-user"], cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("HF_ENDPOINT=http://127.0.0.1:")
        req = urllib.request.Request(line.split("=", 1)[1] + "/api/whoami-v2",
                                     headers={"Authorization": "Bearer hf_cli"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.load(resp)["name"] == "cli-user"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_CLIENT_0353 = r"""
import json, os, sys
from pathlib import Path
import huggingface_hub
from huggingface_hub import HfApi, get_safetensors_metadata, hf_hub_download, snapshot_download
from huggingface_hub.utils import RepositoryNotFoundError

src, user = Path(sys.argv[1]), sys.argv[2]
api = HfApi()
out = {"version": huggingface_hub.__version__, "whoami": api.whoami()["name"]}
repo_id = api.create_repo("ckpt", private=True).repo_id
api.create_repo(repo_id, private=True, exist_ok=True)
out["commit"] = api.upload_folder(repo_id=repo_id, folder_path=src, commit_message="step 10").oid
local = Path(snapshot_download(repo_id))
out["same_bytes"] = all((local / p.relative_to(src)).read_bytes() == p.read_bytes()
                        for p in src.rglob("*") if p.is_file())
info = api.model_info(repo_id, files_metadata=True)
out["sha"], out["private"] = info.sha, info.private
out["lfs"] = sorted(s.rfilename for s in info.siblings if s.lfs)
try:
    HfApi(token=False).model_info(repo_id)
    out["anonymous"] = "visible"
except RepositoryNotFoundError:
    out["anonymous"] = "RepositoryNotFoundError"
out["params"] = get_safetensors_metadata(f"{user}/tiny").parameter_count
ds = api.create_repo("episodes", repo_type="dataset").repo_id
v1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="meta/info.json", repo_id=ds, repo_type="dataset").oid
api.create_tag(ds, tag="v3.0", repo_type="dataset")
api.upload_file(path_or_fileobj=b"v2", path_in_repo="meta/info.json", repo_id=ds, repo_type="dataset")
out["tags"] = {t.name: t.target_commit == v1 for t in api.list_repo_refs(ds, repo_type="dataset").tags}
out["at_tag"] = Path(hf_hub_download(ds, "meta/info.json", repo_type="dataset", revision="v3.0")).read_text()
print(json.dumps(out))
"""


@pytest.mark.slow  # builds (once) a venv from PyPI
def test_client_0353_roundtrip(hub_server: HubServer, hub_python_035: Path, tmp_path: Path) -> None:
    hub_server.seed_safetensors_model(f"{HUB_USER}/tiny", {"w": ("F32", (4, 4)), "b": ("F16", (4,))})
    src = tmp_path / "src"
    _folder(src, "old-client")
    done = subprocess.run([str(hub_python_035), "-c", _CLIENT_0353, str(src), HUB_USER],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["version"] == "0.35.3" and out["whoami"] == HUB_USER
    assert out["same_bytes"] and out["sha"] == out["commit"] and out["private"]
    assert out["lfs"] == ["weights/big.bin"] and out["anonymous"] == "RepositoryNotFoundError"
    assert out["params"] == {"F32": 16, "F16": 4}
    assert out["tags"] == {"v3.0": True} and out["at_tag"] == "v1"
    # 0.35.3 negotiates Xet through `expand=xetEnabled`; the local Hub says yes, so the bytes went through Xet.
    assert any(p.endswith("/xet-write-token/main") for _, p in hub_server.request_log)
    assert not any(m == "PUT" and p.startswith("/_lfs/") for m, p in hub_server.request_log)
