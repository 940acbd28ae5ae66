"""A local Hugging Face Hub that the real `huggingface_hub` client (2.x and 0.3x) accepts.

Tests and `--rehearse` runs point clients at it with `HF_ENDPOINT=http://127.0.0.1:PORT`. The wire protocol
follows the Hub's commit API (tests/reference/SOURCES.md); the parts Trainyard relies on are modelled faithfully:
atomic commits (a revision appears whole or not at all), private / gated repos with the Hub's status codes and
`X-Error-Code`s, Range downloads, and both upload paths: Xet (what huggingface_hub uses whenever hf_xet is
installed: the write token names a `local://` CAS, emulators/xet_cas.py) and LFS (clients with
`HF_HUB_DISABLE_XET=1`, or without hf_xet). Storage counts against a per-account quota when one is set: every
file version still reachable from a branch or tag counts, as on the Hub [DOC]; over it a commit gets the Hub's 403
"Private repository storage limit reached" [3P: huggingface_hub issues #3048/#3049; which call it refuses is INF].
Storage is plain files under `root` so tests can look at it:

    root/blobs/<sha256>                       every file's bytes, content-addressed
    root/cas/<session>/xet/xorbs/             the Xet CAS, one directory per upload session (emulators/xet_cas.py)
    root/trees/<id>.json                      one revision's {path: entry} map
    root/repos/<type>s/<ns>/<name>.json       refs, commits, visibility

Stdlib only, but for hf_xet (rebuilding a Xet-uploaded file; emulators/xet_cas.py). Run it by hand: `python -m emulators.hub_server --root DIR --token T --user U`.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import math
import os
import re
import secrets
import socket
import struct
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator, Literal, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from emulators.serving import EmulatorHTTPServer
from emulators.xet_cas import LocalCas

REPO_TYPES = ("model", "dataset", "space")
REGULAR_MAX = 10 * 1024 * 1024  # the Hub sends bigger files through LFS
LFS_PATTERNS = ("*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.gz", "*.h5", "*.msgpack", "*.npy", "*.npz",
                "*.onnx", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.safetensors", "*.tar",
                "*.tgz", "*.zip", "*.zst", "*tfevents*")
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
               "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _git_oid(data: bytes) -> str:
    """The git blob sha1: what the Hub reports as `oid`/`blobId` and as the ETag of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _wants_lfs(path: str, size: int, sample: bytes) -> bool:
    """The Hub's rule: big, matched by the default .gitattributes, or binary-looking."""
    name = path.rsplit("/", 1)[-1]
    return size > REGULAR_MAX or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS) or b"\0" in sample


def _is_true(values: list[str] | None) -> bool:
    """2.x sends `true`, 0.3x sends `True`, some calls send `1`."""
    return bool(values) and values[0].lower() in ("1", "true")


class HubError(Exception):
    """An error reply. `code` becomes `X-Error-Code`, which is what the client maps to its exception classes."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class _Dropped(Exception):
    """Raised to cut a connection in the middle of an upload body (fault injection)."""


@dataclass
class _Identity:
    name: str
    write: bool
    orgs: tuple[str, ...] = ()

    def acts_for(self, namespace: str) -> bool:
        return namespace == self.name or namespace in self.orgs


@dataclass
class _Repo:
    type: str
    id: str
    private: bool
    created: str
    gated: Literal[False, "manual"] = False
    allowed_users: list[str] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict] = field(default_factory=dict)  # sha -> {parent, tree, title, message, date, author}

    @property
    def namespace(self) -> str:
        return self.id.split("/")[0]

    def resolve(self, rev: str) -> str | None:
        """Branch, tag, `refs/heads/x`, `refs/tags/x` or full commit sha -> commit sha."""
        for prefix, refs in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if rev.startswith(prefix) and rev[len(prefix):] in refs:
                return refs[rev[len(prefix):]]
        return self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)


class HubServer:
    """The fake Hub: state, auth, fault controls, and the HTTP server that exposes them."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root)
        self.host, self.port = host, port
        for sub in ("blobs", "trees", "repos", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.request_log: list[tuple[str, str]] = []
        self._tokens: dict[str, _Identity] = {}
        self._lock = threading.RLock()
        self._trees: dict[str, dict[str, dict]] = {}
        self._repos: dict[tuple[str, str], _Repo] = {}
        for path in sorted(self.root.glob("repos/*/*/*.json")):  # state survives a restart (CLI use)
            repo = _Repo(**json.loads(path.read_text()))
            self._repos[(repo.type, repo.id)] = repo
        self._failures: list[int] = []
        self._drop: str | None = None
        self.cas = LocalCas(self.root / "cas")
        self._quota: dict[str, int] = {}  # namespace -> bytes of private storage
        from emulators.hub_jobs import JobsService

        self.jobs = JobsService(self.root)  # Hugging Face Jobs (emulators/hub_jobs.py)
        self._server: EmulatorHTTPServer | None = None
        self._connections: set[socket.socket] = set()

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> "HubServer":
        self._server = EmulatorHTTPServer((self.host, self.port), _Handler)
        self._server.hub = self  # type: ignore[attr-defined]
        serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="hub-server", daemon=True)
        serve.start()  # a short poll interval keeps stop() fast
        self.jobs.hub_env = self.client_env()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "call start() first"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving and cut kept-alive connections, so no client keeps talking to a stopped hub."""
        self.jobs.stop()
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._server.server_close()
        self._server = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client_env(self, token: str | None = None, xet: bool = True) -> dict[str, str]:
        """Environment for a child process that should use this hub (HF_ENDPOINT is read at import). Xet is the
        production upload path; `xet=False` forces the classic LFS path."""
        env = {"HF_ENDPOINT": self.url, **({} if xet else {"HF_HUB_DISABLE_XET": "1"})}
        return {**env, "HF_TOKEN": token} if token else env

    # ---- controls for tests ----------------------------------------------------------------------------
    def add_token(self, token: str, user: str, write: bool = True, orgs: tuple[str, ...] = ()) -> None:
        self._tokens[token] = _Identity(user, write, tuple(orgs))

    def set_gated(self, repo_id: str, repo_type: str = "model", allowed_users=()) -> None:
        """Gate a repo: metadata stays public, file access needs the owner or an allowed user."""
        with self._lock:
            self._save(self._repos[(repo_type, repo_id)], gated="manual", allowed_users=list(allowed_users))

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` requests (any endpoint but 2.x's telemetry fetch) with `status`."""
        with self._lock:
            self._failures.extend([status] * n)

    def set_storage_quota(self, namespace: str, limit_bytes: int) -> None:
        """Private storage of `namespace` (an account or org): commits that would pass it get the Hub's 403."""
        with self._lock:
            self._quota[namespace] = limit_bytes

    def storage_used(self, namespace: str, extra: Mapping[str, int] | None = None) -> int:
        """Bytes of the distinct file versions reachable from any branch or tag of the namespace's private repos
        (old versions in a branch's history count; a squashed or deleted history frees them), plus `extra`."""
        sizes = dict(extra or {})
        with self._lock:
            for repo in self._repos.values():
                if repo.namespace != namespace or not repo.private:
                    continue
                seen: set[str] = set()
                for head in {*repo.branches.values(), *repo.tags.values()}:
                    sha = head
                    while sha and sha not in seen:
                        seen.add(sha)
                        sizes.update((e["sha256"], e["size"]) for e in self.tree(repo, sha).values())
                        sha = repo.commits[sha]["parent"]
        return sum(sizes.values())

    def drop_next_upload(self, target: Literal["any", "lfs", "xet", "commit"] = "any") -> None:
        """Cut the connection half-way through the next LFS PUT and/or commit body, or ("xet") the next Xet
        write-token request — with a local CAS that is where an upload can be cut before anything is committed.

        Clients retry a broken LFS PUT (the object is re-sent), but not a broken commit POST: use
        `target="commit"` to make the client's upload fail while the previous revision stays intact.
        """
        self._drop = target

    # ---- Python-side seeding ---------------------------------------------------------------------------
    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> _Repo:
        """Create a repo with the Hub's initial commit (a default `.gitattributes`)."""
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = _Repo(type=repo_type, id=repo_id, private=private, created=_now())
            self._repos[(repo_type, repo_id)] = repo
            entry = self._entry(self._put_bytes(GITATTRIBUTES), len(GITATTRIBUTES), lfs=False)
            self._commit(repo, "main", {".gitattributes": entry}, (), "initial commit", "", repo.namespace, None)
        return repo

    def commit_files(self, repo_id: str, files: Mapping[str, bytes], repo_type: str = "model",
                     branch: str = "main", message: str = "seed", author: str | None = None) -> str:
        """Commit `files` ({path: bytes}) directly, as one revision; returns the commit sha."""
        repo = self._repos.get((repo_type, repo_id)) or self.create_repo(repo_id, repo_type)
        adds = {path: self._entry(self._put_bytes(data), len(data), _wants_lfs(path, len(data), data[:512]))
                for path, data in files.items()}
        return self._commit(repo, branch, adds, (), message, "", author or repo.namespace, None)

    def seed_safetensors_model(self, repo_id: str, tensors: Mapping[str, tuple[str, list[int] | tuple]],
                               filename: str = "model.safetensors", private: bool = False) -> str:
        """Commit a valid safetensors file ({name: (dtype, shape)}) whose data section is zeros.

        The zeros are a sparse file on disk, but hashing costs O(size): keep shapes test-sized.
        """
        header, offset = {}, 0
        for name, (dtype, shape) in tensors.items():
            nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
        if (key := ("model", repo_id)) not in self._repos:
            self.create_repo(repo_id, private=private)
        with tempfile.NamedTemporaryFile(dir=self.root / "tmp", delete=False) as tmp:
            tmp.write(struct.pack("<Q", len(raw)) + raw)
            tmp.truncate(8 + len(raw) + offset)
        sha256, size = self._adopt(Path(tmp.name))
        entry = self._entry(sha256, size, lfs=True)
        repo = self._repos[key]
        return self._commit(repo, "main", {filename: entry}, (), f"Add {filename}", "", repo.namespace, None)

    # ---- storage ---------------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def _put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.blob_path(sha256).exists():
            with tempfile.NamedTemporaryFile(dir=self.root / "tmp", delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, self.blob_path(sha256))
        return sha256

    def _adopt(self, tmp: Path) -> tuple[str, int]:
        """Move a finished temp file into the blob store under its sha256."""
        digest, size = hashlib.sha256(), 0
        with open(tmp, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        os.replace(tmp, self.blob_path(digest.hexdigest()))
        return digest.hexdigest(), size

    def _stored_entry(self, path: str, sha256: str, size: int | None) -> dict:
        """The entry of a large file the client uploaded before its commit: through LFS (a blob), or through Xet
        (a file in the CAS's shards, whose bytes are rebuilt here so clients without Xet can read them too)."""
        blob, in_cas = self.blob_path(sha256), self.cas.find(sha256)
        if not blob.exists() and in_cas is not None:
            with tempfile.NamedTemporaryFile(dir=self.root / "tmp", delete=False) as tmp:
                pass
            self.cas.rebuild(in_cas, Path(tmp.name))
            if self._adopt(Path(tmp.name))[0] != sha256:
                raise HubError(400, f"Xet file {in_cas.xet_hash} does not match sha256 {sha256}")
        if not blob.exists() or size not in (None, blob.stat().st_size):
            raise HubError(400, f"Your push was rejected because an LFS pointer pointed to a file "
                                f"that does not exist: {path} ({sha256})")
        entry = self._entry(sha256, blob.stat().st_size, lfs=True)
        return {**entry, "xet": in_cas.xet_hash, "xet_session": in_cas.session} if in_cas else entry

    def _check_quota(self, repo: _Repo, adds: Mapping[str, dict]) -> None:
        limit = self._quota.get(repo.namespace)
        if limit is None or not repo.private:
            return
        if (used := self.storage_used(repo.namespace, {e["sha256"]: e["size"] for e in adds.values()})) > limit:
            raise HubError(403, "Private repository storage limit reached, please upgrade your plan or free up "
                                f"space ({used} of {limit} bytes)")

    def _entry(self, sha256: str, size: int, lfs: bool) -> dict:
        """A tree entry. `oid` is the git blob id: of the content, or of the LFS pointer for LFS files."""
        if lfs:
            return {"sha256": sha256, "size": size, "lfs": True, "oid": _git_oid(_lfs_pointer(sha256, size))}
        return {"sha256": sha256, "size": size, "lfs": False, "oid": _git_oid(self.blob_path(sha256).read_bytes())}

    def tree(self, repo: _Repo, sha: str) -> dict[str, dict]:
        tree_id = repo.commits[sha]["tree"]
        if tree_id not in self._trees:
            self._trees[tree_id] = json.loads((self.root / "trees" / f"{tree_id}.json").read_text())
        return self._trees[tree_id]

    def _write_json(self, path: Path, data) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.root / "tmp", delete=False) as tmp:
            json.dump(data, tmp)
        os.replace(tmp.name, path)

    def _save(self, repo: _Repo, **changes) -> None:
        """Persist the repo (with `changes` applied) before the change becomes visible in memory."""
        ns, name = repo.id.split("/")
        self._write_json(self.root / "repos" / f"{repo.type}s" / ns / f"{name}.json", {**asdict(repo), **changes})
        for key, value in changes.items():
            setattr(repo, key, value)

    def _commit(self, repo: _Repo, branch: str, adds: dict[str, dict], deletes, title: str, message: str,
                author: str, parent: str | None) -> str:
        """Apply one commit to `branch`. The new revision becomes visible in a single ref switch."""
        with self._lock:
            head = repo.branches.get(branch)
            if head is None and repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if parent and parent != head:
                raise HubError(412, f"Parent commit {parent} is not the head of {branch} ({head})")
            files = dict(self.tree(repo, head)) if head else {}
            for path in deletes:
                if path.endswith("/"):
                    gone = [p for p in files if p.startswith(path)]
                else:
                    gone = [path] if path in files else []
                if not gone:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                for p in gone:
                    del files[p]
            files.update(adds)
            canonical = json.dumps(files, sort_keys=True)
            tree_id = hashlib.sha1(canonical.encode()).hexdigest()
            if not (tree_path := self.root / "trees" / f"{tree_id}.json").exists():
                self._write_json(tree_path, files)
            date = _now()
            sha = hashlib.sha1(f"{head}\n{tree_id}\n{author}\n{title}\n{time.time_ns()}".encode()).hexdigest()
            record = {"parent": head, "tree": tree_id, "title": title, "message": message, "date": date,
                      "author": author}
            self._save(repo, commits={**repo.commits, sha: record}, branches={**repo.branches, branch: sha})
            return sha

    # ---- auth and faults (called by the handler) -------------------------------------------------------
    def _identity(self, authorization: str | None) -> _Identity | None:
        if not authorization:
            return None
        token = authorization.split(" ", 1)[-1].strip()
        if token not in self._tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self._tokens[token]

    def _take_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _take_drop(self, kind: str) -> bool:
        with self._lock:
            if self._drop in ("any", kind):
                self._drop = None
                return True
            return False


_API = r"/api/(?P<t>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)"
_WEB = r"/(?:(?P<p>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+?)"
_ROUTES = [(method, re.compile(pattern), handler) for method, pattern, handler in [
    ("GET", r"/api/whoami-v2", "whoami"),
    ("GET", r"/api/jobs/hardware", "jobs_hardware"),
    ("POST", r"/api/jobs/(?P<ns>[^/]+)", "job_create"),
    ("GET", r"/api/jobs/(?P<ns>[^/]+)", "job_list"),
    ("GET", r"/api/jobs/(?P<ns>[^/]+)/(?P<job_id>[0-9a-f]+)", "job_info"),
    ("POST", r"/api/jobs/(?P<ns>[^/]+)/(?P<job_id>[0-9a-f]+)/cancel", "job_cancel"),
    ("GET", r"/api/jobs/(?P<ns>[^/]+)/(?P<job_id>[0-9a-f]+)/logs", "job_logs"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", r"/api/agent-harnesses", "agent_harnesses"),
    ("GET", _API + r"(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
    ("GET", _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
    ("POST", _API + r"/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("GET", _API + r"/refs", "refs"),
    ("POST", _API + r"/branch/(?P<branch>[^/]+)", "create_branch"),
    ("POST", _API + r"/tag/(?P<rev>[^/]+)", "create_tag"),
    ("GET", _API + r"/commits/(?P<rev>[^/]+)", "commits"),
    ("GET", _API + r"/auth-check(?P<write>/write)?", "auth_check"),
    ("POST", _API + r"/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", _API + r"/commit/(?P<rev>[^/]+)", "commit"),
    ("GET", _API + r"/xet-(?P<access>read|write)-token/(?P<rev>[^/]+)", "xet_token"),
    ("POST", _API + r"/super-squash/(?P<branch>[^/]+)", "super_squash"),
    ("DELETE", _API + r"/branch/(?P<branch>[^/]+)", "delete_branch"),
    ("POST", _WEB + r"\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/_lfs/(?P<oid>[0-9a-f]{64})", "lfs_put"),
    ("POST", r"/_lfs/(?P<oid>[0-9a-f]{64})/verify", "lfs_verify"),
    ("GET", _WEB + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]]


class _Handler(BaseHTTPRequestHandler):
    """One HTTP connection. Route handlers are the `_h_*` methods; they raise HubError for error replies."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every reply carries Content-Length
    timeout = 120  # a stalled client must not pin a thread forever

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        self.hub._connections.add(self.connection)

    def finish(self) -> None:
        self.hub._connections.discard(self.connection)
        super().finish()

    def log_message(self, format, *args) -> None:  # the request_log is the record; keep stderr quiet
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.hub.request_log.append((self.command, url.path))
        self.query = parse_qs(url.query)
        self._body_started = False
        try:
            if url.path != "/api/agent-harnesses" and (status := self.hub._take_failure()):
                raise HubError(status, f"Injected failure ({status})")
            self.user = self.hub._identity(self.headers.get("Authorization"))
            method = "GET" if self.command == "HEAD" else self.command
            for route_method, pattern, name in _ROUTES:
                if route_method == method and (m := pattern.fullmatch(url.path)):
                    args = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
                    return getattr(self, f"_h_{name}")(**args)
            raise HubError(404, f"No route for {self.command} {url.path}")
        except HubError as err:
            self._send_json(err.status, {"error": err.message},
                            {**({"X-Error-Code": err.code} if err.code else {}),
                             "X-Error-Message": err.message, **err.headers})
        except (_Dropped, OSError):  # injected drop, or the client went away: end this connection
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except Exception as exc:  # a bug here, or input we did not expect: say so instead of hanging up
            self.close_connection = True
            self._send_json(500, {"error": f"local hub failed: {exc!r}"}, {"X-Error-Message": "local hub failed"})

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    # ---- request and reply plumbing --------------------------------------------------------------------
    def _chunks(self) -> Iterator[bytes]:
        """The request body, plain or `Transfer-Encoding: chunked` (httpx2 streams unsized bodies)."""
        self._body_started = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while size := int(self.rfile.readline().split(b";")[0], 16):
                yield self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                raise _Dropped("client closed the connection mid-body")
            left -= len(chunk)
            yield chunk

    def _body(self) -> bytes:
        return b"".join(self._chunks())

    def _json_body(self) -> dict:
        raw = self._body()
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise HubError(400, "Request body is not valid JSON")

    def _maybe_drop(self, kind: str) -> None:
        """Fault injection: read about half of the body, then cut the connection."""
        if self.hub._take_drop(kind):
            self.rfile.read(int(self.headers.get("Content-Length") or 2) // 2)
            raise _Dropped(kind)

    def _send(self, status: int, body: bytes, headers: dict | None = None, length: int | None = None) -> None:
        if not self._body_started:  # drain an unread body so the kept-alive connection stays in sync
            for _ in self._chunks():
                pass
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, data, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    @property
    def _base(self) -> str:
        """Our own origin as the client sees it, for absolute URLs in replies."""
        return f"http://{self.headers.get('Host') or self.hub.url.split('://')[1]}"

    def _repo(self, repo_type: str, ns: str, name: str, need: str = "read") -> _Repo:
        """Look a repo up with the Hub's visibility rules; `need` is read | content | write."""
        repo_id, user = f"{ns}/{name}", self.user
        repo = self.hub._repos.get((repo_type, repo_id))
        member = user is not None and user.acts_for(ns)
        if repo is None or (repo.private and not member):
            # anonymous -> 401, authenticated -> 404: the client raises RepositoryNotFoundError for both
            raise HubError(401 if user is None else 404, f"Repository not found: {repo_id}", "RepoNotFound")
        if need == "content" and repo.gated and not (member or user and user.name in repo.allowed_users):
            if user is None:
                raise HubError(401, f"Access to {repo_type} {repo_id} is restricted. You must have access to it "
                                    "and be authenticated to access it. Please log in.", "GatedRepo")
            raise HubError(403, f"Access to {repo_type} {repo_id} is restricted and you are not in the authorized "
                                f"list. Visit {self._base}/{repo_id} to ask for access.", "GatedRepo")
        if need == "write" and not (member and user.write):
            raise HubError(401 if user is None else 403, f"You don't have write access to {repo_id}")
        return repo

    @staticmethod
    def _sha(repo: _Repo, rev: str) -> str:
        if (sha := repo.resolve(rev)) is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha

    @staticmethod
    def _file_json(path: str, entry: dict) -> dict:
        out = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
        if entry["lfs"]:
            pointer_size = len(_lfs_pointer(entry["sha256"], entry["size"]))
            out["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": pointer_size}
        return out

    @staticmethod
    def _dirs(files: dict[str, dict]) -> dict[str, str]:
        """Every folder of a revision -> a stable oid derived from what is inside it."""
        dirs: dict[str, list[str]] = {}
        for path, entry in sorted(files.items()):
            parts = path.split("/")
            for i in range(1, len(parts)):
                dirs.setdefault("/".join(parts[:i]), []).append(f"{path}:{entry['oid']}")
        return {d: hashlib.sha1("\n".join(items).encode()).hexdigest() for d, items in dirs.items()}

    # ---- account and repo lifecycle --------------------------------------------------------------------
    def _h_whoami(self) -> None:
        if self.user is None:
            raise HubError(401, "Invalid user token.")
        role = "write" if self.user.write else "read"
        self._send_json(200, {
            "type": "user", "id": hashlib.sha1(self.user.name.encode()).hexdigest()[:24], "name": self.user.name,
            "fullname": self.user.name, "email": f"{self.user.name}@localhost", "emailVerified": True,
            "canPay": False, "isPro": False, "periodEnd": None, "avatarUrl": "",
            "orgs": [{"type": "org", "name": org, "roleInOrg": "admin"} for org in self.user.orgs],
            "auth": {"type": "access_token",
                     "accessToken": {"displayName": "trainyard", "role": role, "createdAt": _now()}}})

    # ---- Hugging Face Jobs (emulators/hub_jobs.py) ------------------------------------------------------
    def _job_namespace(self, ns: str) -> None:
        if self.user is None:
            raise HubError(401, "Invalid user token.")
        if not self.user.acts_for(ns):
            raise HubError(403, f"You cannot run jobs in namespace {ns}")

    def _job(self, ns: str, job_id: str):
        self._job_namespace(ns)
        job = self.hub.jobs.get(ns, job_id)
        if job is None:
            raise HubError(404, f"Job {job_id} not found")
        return job

    def _h_jobs_hardware(self) -> None:
        self._send_json(200, self.hub.jobs.hardware())

    def _h_job_create(self, ns: str) -> None:
        self._job_namespace(ns)
        spec = self._json_body()
        if not isinstance(spec.get("command"), list) or not spec["command"]:
            raise HubError(400, "command is required")
        if spec.get("flavor") not in {h["name"] for h in self.hub.jobs.hardware()}:
            raise HubError(400, f"Unknown flavor {spec.get('flavor')!r}")
        jobs = self.hub.jobs
        if jobs.refusals:
            raise HubError(*jobs.refusals.pop(0))
        created = jobs.create(ns, spec)
        if jobs.lost_answers:  # the job exists; its answer never arrives
            jobs.lost_answers -= 1
            self.close_connection = True
            return
        self._send_json(200, created)

    def _h_job_list(self, ns: str) -> None:
        self._job_namespace(ns)
        self._send_json(200, self.hub.jobs.listing(ns, self.query.get("stage", []), self.query.get("label", [])))

    def _h_job_info(self, ns: str, job_id: str) -> None:
        self._send_json(200, self.hub.jobs.view(self._job(ns, job_id)))

    def _h_job_cancel(self, ns: str, job_id: str) -> None:
        self.hub.jobs.cancel(self._job(ns, job_id))
        self._send_json(200, {})

    def _h_job_logs(self, ns: str, job_id: str) -> None:
        """SSE: every line so far, then new ones while the job runs; the stream ends with the job."""
        from emulators.hub_jobs import TERMINAL, _stamp

        job = self._job(ns, job_id)
        for _ in self._chunks():
            pass
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = 0
        while True:
            lines, done = list(job.lines), job.stage in TERMINAL
            for at, line in lines[sent:]:
                self.wfile.write(f"data: {json.dumps({'data': line, 'timestamp': _stamp(at)})}\n\n".encode())
            self.wfile.flush()
            sent = len(lines)
            if done:
                return
            time.sleep(0.1)

    def _h_create_repo(self) -> None:
        body = self._json_body()
        if self.user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        ns, repo_type = body.get("organization") or self.user.name, body.get("type") or "model"
        if repo_type not in REPO_TYPES or not re.fullmatch(r"[\w.-]+", str(body.get("name", ""))):
            raise HubError(400, "Invalid repo name or type")
        if not (self.user.write and self.user.acts_for(ns)):
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {ns}")
        repo_id = f"{ns}/{body['name']}"
        url = f"{self._base}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        private = body.get("visibility", "private" if body.get("private") else "public") != "public"
        try:
            self.hub.create_repo(repo_id, repo_type, private)
        except HubError as err:
            return self._send_json(err.status, {"error": err.message, "url": url}, {"X-Error-Message": err.message})
        self._send_json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _h_validate_yaml(self) -> None:
        self._send_json(200, {"errors": [], "warnings": []})

    def _h_agent_harnesses(self) -> None:
        """2.x fetches this registry (best-effort telemetry) once a day; an empty one disables it."""
        self._send_json(200, {"standardEnvVars": [], "harnesses": {}})

    def _h_xet_token(self, t: str, ns: str, name: str, access: str, rev: str) -> None:
        """The CAS and a short-lived token, in the body (what hf_xet reads) and the headers (what the Python
        client reads) [SRC: huggingface_hub utils/_xet.py, hf_xet XetSession]."""
        self._repo(t[:-1], ns, name, "write" if access == "write" else "content")
        if access == "write" and self.hub._take_drop("xet"):
            raise _Dropped("xet")
        try:  # a write gets a session of its own; a read names the session that wrote the file
            cas = self.hub.cas.url(self.hub.cas.new_session() if access == "write" else self.query["session"][-1])
        except (KeyError, IndexError):
            raise HubError(404, "Unknown Xet session") from None
        token, expires = f"xet-{secrets.token_hex(8)}", int(time.time()) + 3600
        self._send_json(200, {"accessToken": token, "exp": expires, "casUrl": cas},
                        {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(expires)})

    # ---- reading ---------------------------------------------------------------------------------------
    def _h_repo_info(self, t: str, ns: str, name: str, rev: str = "main") -> None:
        repo = self._repo(t[:-1], ns, name)
        sha = self._sha(repo, rev)
        files, commit = self.hub.tree(repo, sha), repo.commits[sha]
        blobs = _is_true(self.query.get("blobs"))
        siblings = []
        for path, entry in sorted(files.items()):
            sibling = {"rfilename": path}
            if blobs:
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if entry["lfs"]:
                    pointer_size = len(_lfs_pointer(entry["sha256"], entry["size"]))
                    sibling["lfs"] = {"sha256": entry["sha256"], "size": entry["size"], "pointerSize": pointer_size}
            siblings.append(sibling)
        info = {"_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24], "id": repo.id, "author": repo.namespace,
                "sha": sha, "lastModified": commit["date"], "createdAt": repo.created, "private": repo.private,
                "gated": repo.gated, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "xetEnabled": True, "siblings": siblings, "usedStorage": sum(e["size"] for e in files.values())}
        if repo.type == "model":
            info["modelId"] = repo.id
            params = self._safetensors_params(files)
            if params:
                info["safetensors"] = {"parameters": params, "total": sum(params.values())}
        self._send_json(200, info)

    def _safetensors_params(self, files: dict[str, dict]) -> dict[str, int]:
        """Parameter counts per dtype from the top-level safetensors headers (the repo's own weights, not the
        copies under checkpoints/), as the Hub reports them."""
        params: dict[str, int] = {}
        for path, entry in files.items():
            if "/" in path or not path.endswith(".safetensors"):
                continue
            try:
                with open(self.hub.blob_path(entry["sha256"]), "rb") as f:
                    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
                for key, tensor in header.items():
                    if key != "__metadata__":
                        params[tensor["dtype"]] = params.get(tensor["dtype"], 0) + math.prod(tensor["shape"])
            except (ValueError, KeyError, TypeError, struct.error, MemoryError):
                continue  # not a safetensors file after all: the Hub just reports nothing for it
        return params

    def _h_tree(self, t: str, ns: str, name: str, rev: str, path: str = "") -> None:
        repo = self._repo(t[:-1], ns, name)
        files = self.hub.tree(repo, self._sha(repo, rev))
        dirs, path = self._dirs(files), path.strip("/")
        if path and path not in dirs:
            raise HubError(404, f"Path {path} not found in {repo.id}", "EntryNotFound")
        recursive, prefix = _is_true(self.query.get("recursive")), f"{path}/" if path else ""
        entries = [{"type": "directory", "oid": oid, "size": 0, "path": d} for d, oid in dirs.items()]
        entries += [self._file_json(p, e) for p, e in files.items()]
        inside = [e for e in entries if e["path"].startswith(prefix)]
        if not recursive:
            inside = [e for e in inside if "/" not in e["path"][len(prefix):]]
        self._send_json(200, sorted(inside, key=lambda e: e["path"]))  # one page: no `Link` header needed

    def _h_paths_info(self, t: str, ns: str, name: str, rev: str) -> None:
        repo = self._repo(t[:-1], ns, name, "content")
        files = self.hub.tree(repo, self._sha(repo, rev))
        dirs = self._dirs(files)
        out = []
        for path in parse_qs(self._body().decode()).get("paths", []):
            if path in files:
                out.append(self._file_json(path, files[path]))
            elif path in dirs:
                out.append({"type": "directory", "oid": dirs[path], "size": 0, "path": path})
        self._send_json(200, out)

    def _h_refs(self, t: str, ns: str, name: str) -> None:
        repo = self._repo(t[:-1], ns, name)
        refs = {kind: [{"name": n, "ref": f"refs/{folder}/{n}", "targetCommit": sha} for n, sha in table.items()]
                for kind, folder, table in (("branches", "heads", repo.branches), ("tags", "tags", repo.tags))}
        refs["converts"] = []
        if _is_true(self.query.get("include_prs")):
            refs["pullRequests"] = []
        self._send_json(200, refs)

    def _h_commits(self, t: str, ns: str, name: str, rev: str) -> None:
        repo = self._repo(t[:-1], ns, name)
        sha, out = self._sha(repo, rev), []
        while sha:
            c = repo.commits[sha]
            out.append({"id": sha, "title": c["title"], "message": c["message"], "date": c["date"],
                        "authors": [{"user": c["author"]}]})
            sha = c["parent"]
        self._send_json(200, out)

    def _h_auth_check(self, t: str, ns: str, name: str, write: str = "") -> None:
        self._repo(t[:-1], ns, name, "write" if write else "content")
        self._send_json(200, {})

    def _h_resolve(self, ns: str, name: str, rev: str, path: str, p: str = "") -> None:
        repo = self._repo(p[:-1] if p else "model", ns, name, "content")
        sha = self._sha(repo, rev)
        entry = self.hub.tree(repo, sha).get(path)
        if entry is None:  # X-Repo-Commit lets the client cache the miss
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        size = entry["size"]
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if entry["lfs"]:
            etag = f'"{entry["sha256"]}"'
            headers.update({"ETag": etag, "X-Linked-Etag": etag, "X-Linked-Size": size})
            if entry.get("xet"):  # stored in Xet: clients with hf_xet fetch it from the CAS
                refresh = f"{self._base}/api/{repo.type}s/{repo.id}/xet-read-token/{sha}?session={entry['xet_session']}"
                headers.update({"X-Xet-Hash": entry["xet"], "Link": f'<{refresh}>; rel="xet-auth"'})
        else:
            headers["ETag"] = f'"{entry["oid"]}"'
        start, end, status = 0, size - 1, 200
        if m := re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip()):
            if m[1]:
                start, end = int(m[1]), min(int(m[2]), size - 1) if m[2] else size - 1
            elif m[2]:  # suffix range: the last N bytes
                start = max(size - int(m[2]), 0)
            if start >= size or start > end:
                raise HubError(416, f"Range not satisfiable: {m[0]} (size {size})",
                               headers={"Content-Range": f"bytes */{size}", "X-Repo-Commit": sha})
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{size}"
        self._send(status, b"", headers, length=end - start + 1)
        if self.command == "HEAD":
            return
        with open(self.hub.blob_path(entry["sha256"]), "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0 and (chunk := f.read(min(left, 1 << 20))):
                self.wfile.write(chunk)
                left -= len(chunk)

    # ---- writing ---------------------------------------------------------------------------------------
    def _h_super_squash(self, t: str, ns: str, name: str, branch: str) -> None:
        """The branch's whole history becomes one commit with its current files [DOC: HfApi.super_squash_history];
        file versions no other ref reaches stop counting against storage."""
        repo, body = self._repo(t[:-1], ns, name, "write"), self._json_body()
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        with self.hub._lock:
            head = repo.commits[repo.branches[branch]]
            sha = hashlib.sha1(f"squash\n{head['tree']}\n{time.time_ns()}".encode()).hexdigest()
            record = {**head, "parent": None, "title": body.get("message") or f"Super-squash branch '{branch}'",
                      "message": "", "date": _now(), "author": self.user.name}
            self.hub._save(repo, commits={**repo.commits, sha: record}, branches={**repo.branches, branch: sha})
        self._send_json(200, {"commitId": sha})

    def _h_delete_branch(self, t: str, ns: str, name: str, branch: str) -> None:
        """DELETE /api/<type>s/<repo>/branch/<branch> [SRC: HfApi.delete_branch]; `main` is protected [DOC]."""
        repo = self._repo(t[:-1], ns, name, "write")
        if branch == "main":
            raise HubError(403, "Cannot delete the main branch")
        with self.hub._lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            self.hub._save(repo, branches={k: v for k, v in repo.branches.items() if k != branch})
        self._send_json(200, {})

    def _h_create_branch(self, t: str, ns: str, name: str, branch: str) -> None:
        repo, body = self._repo(t[:-1], ns, name, "write"), self._json_body()
        sha = self._sha(repo, body.get("startingPoint") or "main")
        with self.hub._lock:
            if branch in repo.branches:
                raise HubError(409, f"Branch {branch} already exists")
            self.hub._save(repo, branches={**repo.branches, branch: sha})
        self._send_json(200, {})

    def _h_create_tag(self, t: str, ns: str, name: str, rev: str) -> None:
        repo, body = self._repo(t[:-1], ns, name, "write"), self._json_body()
        sha, tag = self._sha(repo, rev), str(body.get("tag", ""))
        with self.hub._lock:
            if not tag or tag in repo.tags:
                raise HubError(409, f"Tag {tag!r} already exists" if tag else "Missing tag name")
            self.hub._save(repo, tags={**repo.tags, tag: sha})
        self._send_json(200, {})

    def _h_preupload(self, t: str, ns: str, name: str, rev: str) -> None:
        repo, body = self._repo(t[:-1], ns, name, "write"), self._json_body()
        files = self.hub.tree(repo, self._sha(repo, rev))
        out = []
        for f in body.get("files", []):
            lfs = _wants_lfs(f["path"], f["size"], base64.b64decode(f.get("sample", "")))
            existing = files.get(f["path"])
            # the client skips files whose oid matches: sha256 for LFS, git blob sha1 for regular files
            oid = existing and (existing["sha256"] if existing["lfs"] else existing["oid"])
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        self._send_json(200, {"files": out})

    def _h_lfs_batch(self, ns: str, name: str, p: str = "") -> None:
        repo = self._repo(p[:-1] if p else "model", ns, name, "write")
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubError(400, f"{repo.id}: only the LFS 'upload' operation is supported")
        objects = []
        for obj in body.get("objects", []):
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.hub.blob_path(obj["oid"]).exists():  # no "actions" = already stored, client skips it
                href = f"{self._base}/_lfs/{obj['oid']}"
                item["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
            objects.append(item)
        self._send_json(200, {"transfer": "basic", "hash_algo": "sha256", "objects": objects},
                        {"Content-Type": "application/vnd.git-lfs+json"})

    def _h_lfs_put(self, oid: str) -> None:
        """The pre-signed upload URL: no auth, raw bytes, checked against the announced sha256."""
        self._maybe_drop("lfs")
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=self.hub.root / "tmp", delete=False) as tmp:
            try:
                for chunk in self._chunks():
                    tmp.write(chunk)
                    digest.update(chunk)
            except BaseException:  # a broken upload leaves no blob behind
                os.unlink(tmp.name)
                raise
        if digest.hexdigest() != oid:
            os.unlink(tmp.name)
            raise HubError(400, f"Uploaded content does not match sha256 {oid}")
        os.replace(tmp.name, self.hub.blob_path(oid))
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def _h_lfs_verify(self, oid: str) -> None:
        body = self._json_body()
        path = self.hub.blob_path(oid)
        if not path.exists() or path.stat().st_size != body.get("size", path.stat().st_size):
            raise HubError(404, f"LFS object {oid} was not uploaded (or has the wrong size)")
        self._send_json(200, {})

    def _h_commit(self, t: str, ns: str, name: str, rev: str) -> None:
        """Parse the whole ndjson body first: a commit cut short changes nothing."""
        repo = self._repo(t[:-1], ns, name, "write")
        if _is_true(self.query.get("create_pr")):
            raise HubError(400, "Pull requests are not supported by the local hub")
        self._maybe_drop("commit")
        header, adds, deletes = {}, {}, []
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value", {})
            if key == "header":
                header = value
            elif key == "file":
                data = base64.b64decode(value["content"])
                adds[value["path"]] = self.hub._entry(self.hub._put_bytes(data), len(data), lfs=False)
            elif key == "lfsFile":
                adds[value["path"]] = self.hub._stored_entry(value["path"], value["oid"], value.get("size"))
            elif key in ("deletedFile", "deletedFolder"):
                deletes.append(value["path"].rstrip("/") + ("/" if key == "deletedFolder" else ""))
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        self.hub._check_quota(repo, adds)
        sha = self.hub._commit(repo, rev, adds, deletes, header.get("summary") or "Upload files",
                               header.get("description", ""), self.user.name, header.get("parentCommit"))
        url = f"{self._base}/{'' if repo.type == 'model' else repo.type + 's/'}{repo.id}/commit/{sha}"
        self._send_json(200, {"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": "",
                              "pullRequestUrl": None})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Hugging Face Hub for tests and rehearsals.")
    parser.add_argument("--root", type=Path, required=True, help="where blobs, trees and repo state live")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", help="register this token (write access) ...")
    parser.add_argument("--user", default="trainyard", help="... for this user")
    args = parser.parse_args(argv)
    hub = HubServer(args.root, args.host, args.port).start()
    if args.token:
        hub.add_token(args.token, args.user)
    print(f"HF_ENDPOINT={hub.url}", flush=True)
    print("# clients also need HF_HUB_DISABLE_XET=1; Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
