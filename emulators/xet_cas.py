"""The local Hub's Xet storage: a `local://` CAS directory that the real `hf_xet` client writes to and reads from.

The Hub's `xet-write-token` answer names the CAS with `casUrl`; with `local:///dir` hf_xet (1.8.0) writes its
xorbs and shards under `dir/xet/xorbs/` and needs no CAS server [SRC, tried here]. A local CAS directory takes one
writer at a time (hf_xet holds a lock on its dedup database: a second process gets "Database already open"), where a
real CAS server takes many; so every write token names a CAS directory of its own (one upload session), and a file
is read back from the session that wrote it (its read-token route names the session). The Hub learns which files an
upload made from the shards: each file entry carries its Xet hash, its segments and a metadata extension holding the
file's sha256 — the sha256 the client then names in its commit's `lfsFile` line [SRC: xet-core mdb_shard]. This
module reads that shard format (stdlib only) and, when a commit names such a file, rebuilds its bytes through
hf_xet so the local Hub can also serve them to clients without Xet.
"""

from __future__ import annotations

import re
import secrets
import struct
import time
from dataclasses import dataclass, replace
from pathlib import Path

SHARD_HEADER_BYTES = 48  # 32-byte tag, u64 version, u64 footer size
ENTRY_BYTES = 48  # every record in the file-info section is 48 bytes
WITH_VERIFICATION = 1 << 31
WITH_METADATA_EXT = 1 << 30
BOOKEND = b"\xff" * 32


def merkle_hex(raw: bytes) -> str:
    """Xet prints a 32-byte hash as four little-endian u64 words, each as 16 hex digits."""
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", raw))


@dataclass(frozen=True)
class XetFile:
    xet_hash: str
    sha256: str
    size: int
    session: str = ""  # the upload session (CAS directory) that holds it


def shard_files(shard: bytes) -> list[XetFile] | None:
    """The files a shard describes (those with the sha256 metadata extension that Hub uploads carry); None when the
    file-info section does not end (a shard still being written: read it again later)."""
    files, at = [], SHARD_HEADER_BYTES
    while at + ENTRY_BYTES <= len(shard):
        file_hash, flags, entries = shard[at:at + 32], *struct.unpack_from("<II", shard, at + 32)
        if file_hash == BOOKEND:
            return files
        at += ENTRY_BYTES
        size = sum(struct.unpack_from("<I", shard, at + i * ENTRY_BYTES + 36)[0] for i in range(entries))
        at += entries * ENTRY_BYTES
        if flags & WITH_VERIFICATION:
            at += entries * ENTRY_BYTES
        if flags & WITH_METADATA_EXT:
            files.append(XetFile(merkle_hex(file_hash), merkle_hex(shard[at:at + 32]), size))
            at += ENTRY_BYTES
    return None


class LocalCas:
    """Upload sessions' CAS directories (root/<session>/) and an index of the files their shards describe, by sha256."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._by_sha256: dict[str, XetFile] = {}
        self._read: set[Path] = set()  # shards read whole (an upload may still be writing one)

    def new_session(self) -> str:
        session = secrets.token_hex(8)
        (self.root / session).mkdir()
        return session

    def url(self, session: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{16}", session) or not (self.root / session).is_dir():
            raise KeyError(session)
        return f"local://{(self.root / session).resolve()}"

    def find(self, sha256: str) -> XetFile | None:
        if sha256 not in self._by_sha256:
            for shard in sorted(self.root.glob("*/xet/xorbs/shards/*.mdb")):
                if shard not in self._read and (files := shard_files(shard.read_bytes())) is not None:
                    self._read.add(shard)
                    session = shard.relative_to(self.root).parts[0]
                    self._by_sha256.update((f.sha256, replace(f, session=session)) for f in files)
        return self._by_sha256.get(sha256)

    def rebuild(self, found: XetFile, dest: Path) -> None:
        """Write the file's bytes to `dest`, reconstructed from its session's xorbs by hf_xet itself."""
        import hf_xet

        expiry = int(time.time()) + 3600
        with hf_xet.XetSession().new_file_download_group(endpoint=self.url(found.session), token="local",
                                                         token_expiry_unix_secs=expiry) as group:
            group.start_download_file(hf_xet.XetFileInfo(found.xet_hash, found.size), str(dest))
