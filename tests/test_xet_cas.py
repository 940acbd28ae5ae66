"""The local Hub's Xet CAS (emulators/xet_cas.py): the shards the real hf_xet writes, read back."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import hf_xet

from emulators.xet_cas import LocalCas, shard_files


def upload(cas: LocalCas, path: Path) -> None:
    """What huggingface_hub does with the Hub's write token: hf_xet writes xorbs and a shard into a session's CAS."""
    with hf_xet.XetSession().new_upload_commit(endpoint=cas.url(cas.new_session()), token="local",
                                               token_expiry_unix_secs=int(time.time()) + 3600) as commit:
        commit.start_upload_file(str(path), sha256=hf_xet.COMPUTE_SHA256)


def test_files_are_found_by_sha256_and_rebuilt_whole(tmp_path: Path) -> None:
    cas = LocalCas(tmp_path / "cas")
    data = os.urandom(3_000_000)
    (tmp_path / "weights.bin").write_bytes(data)
    upload(cas, tmp_path / "weights.bin")
    found = cas.find(hashlib.sha256(data).hexdigest())
    assert found is not None and found.size == len(data) and len(found.xet_hash) == 64
    cas.rebuild(found, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data
    assert cas.find("0" * 64) is None


def test_a_shard_still_being_written_is_read_again_later(tmp_path: Path) -> None:
    """Uploads run at once (several runs, one Hub): a shard seen half-written must not hide its files for good."""
    cas = LocalCas(tmp_path / "cas")
    data = os.urandom(200_000)
    (tmp_path / "model.bin").write_bytes(data)
    upload(cas, tmp_path / "model.bin")
    (shard,) = cas.root.glob("*/xet/xorbs/shards/*.mdb")
    whole = shard.read_bytes()
    cut = whole.index(b"\xff" * 32)  # written up to the file-info section's bookend, not yet the bookend
    assert shard_files(whole[:cut]) is None and shard_files(whole) is not None
    shard.write_bytes(whole[:cut])
    sha256 = hashlib.sha256(data).hexdigest()
    assert cas.find(sha256) is None
    shard.write_bytes(whole)  # the writer finished
    assert cas.find(sha256) is not None


def test_uploads_at_once_each_have_a_session_of_their_own(tmp_path: Path) -> None:
    """A local CAS directory takes one writer at a time (hf_xet locks its dedup database); a real CAS takes many.
    Four processes upload at once, each through its own session, and every file is found and rebuilt."""
    import subprocess
    import sys

    cas = LocalCas(tmp_path / "cas")
    script = ("import sys, time, hf_xet\n"
              "with hf_xet.XetSession().new_upload_commit(endpoint=sys.argv[1], token='t',"
              " token_expiry_unix_secs=int(time.time()) + 3600) as c:\n"
              "    c.start_upload_file(sys.argv[2], sha256=hf_xet.COMPUTE_SHA256)\n")
    data = {n: os.urandom(2_000_000) for n in range(4)}
    for n, blob in data.items():
        (tmp_path / f"{n}.bin").write_bytes(blob)
    uploads = [subprocess.Popen([sys.executable, "-c", script, cas.url(cas.new_session()), str(tmp_path / f"{n}.bin")],
                                stderr=subprocess.PIPE, text=True) for n in data]
    assert [u.wait(120) for u in uploads] == [0] * 4, [u.stderr.read() for u in uploads]
    for n, blob in data.items():
        found = cas.find(hashlib.sha256(blob).hexdigest())
        cas.rebuild(found, tmp_path / f"back-{n}.bin")
        assert (tmp_path / f"back-{n}.bin").read_bytes() == blob
