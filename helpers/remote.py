"""SSH to a cloud instance: wait until sshd answers, upload the run folder, start the runtime detached, follow
its log, read its status, bring files home. Shared by every backend that rents machines (Verda, RunPod).

    remote = Remote(host, port, key_path=key).connect(wait_seconds=600)
    remote.upload_run(Path("runs/r1"), "/root/lerobot_run", extra={"train.remote.yaml": Path("cfg.yaml")})
    pid = remote.start_detached("/root/lerobot_run", ["--mode", "auto"])
    for line in remote.tail("/root/lerobot_run", pid=pid): ...   # ends on done/failed/stopped or a lost connection
    remote.tail_end                                             # "done" | "failed" | "stopped" | "lost" | "crashed"
    remote.fetch("/root/lerobot_run/outputs/train/r1", Path("runs/r1/outputs"))

Paramiko directly (fabric is paramiko plus a task runner we do not need here). Host keys: trust on first use,
in memory only — every instance is new and its address is recycled, so a known_hosts file would only ever
hold stale keys. Secrets never travel in a command line: `.env` is written over SFTP as a file, mode 0600
before any byte of it is written.
"""

from __future__ import annotations

import json
import posixpath
import shlex
import socket
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TERMINAL_STATES = ("done", "failed", "stopped")
PROGRESS_MIN_BYTES = 1 << 20  # files/transfers smaller than this go without a progress bar
RUNTIME_FILES = ("trainyard_runtime.pyz", "job.json")


class RemoteError(Exception):
    """SSH failed for good (after the retries), or a remote command failed."""


def _connection_errors() -> tuple[type[BaseException], ...]:
    import paramiko

    return (paramiko.SSHException, EOFError, socket.timeout, ConnectionError, OSError)


class Remote:
    """One SSH connection to an instance (user root by default, key authentication only)."""

    def __init__(self, host: str, port: int = 22, user: str = "root", key_path: str | Path | None = None,
                 connect_timeout: float = 15.0, io_timeout: float = 60.0):
        self.host, self.port, self.user = host, int(port), user
        self.key_path = str(Path(key_path).expanduser()) if key_path else None
        self.connect_timeout, self.io_timeout = connect_timeout, io_timeout
        self._client = None
        self._sftp = None
        self.tail_offset = 0
        self.tail_end: str | None = None
        self.last_status: dict | None = None

    def __repr__(self) -> str:
        return f"Remote({self.user}@{self.host}:{self.port})"

    # --- connection ---------------------------------------------------------------------------------
    def connect(self, wait_seconds: float = 600.0) -> "Remote":
        """Connect, retrying (exponential backoff, 0.5 s up to 10 s) until sshd answers and accepts the key or
        `wait_seconds` pass. A fresh instance refuses connections, then may reject the key until its
        authorized_keys is written: both are retried."""
        from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

        @retry(stop=stop_after_delay(wait_seconds), wait=wait_exponential(multiplier=0.5, min=0.5, max=10),
               retry=retry_if_exception_type(_connection_errors()), reraise=True)
        def attempt():
            self._open()

        try:
            attempt()
        except _connection_errors() as exc:
            raise RemoteError(f"cannot SSH to {self.user}@{self.host}:{self.port} after {wait_seconds:.0f}s: "
                              f"{type(exc).__name__}: {exc}") from exc
        return self

    def _open(self) -> None:
        import paramiko

        self.close()
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(self.host, self.port, username=self.user, key_filename=self.key_path,
                           look_for_keys=self.key_path is None, allow_agent=self.key_path is None,
                           timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout)
            transport = client.get_transport()
            transport.set_keepalive(10)  # a VM that vanishes sends nothing: keepalives turn that into an error
            _, out, _ = client.exec_command("true", timeout=self.connect_timeout)
            out.channel.recv_exit_status()
        except BaseException:
            client.close()
            raise
        self._client = client

    @property
    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    def close(self) -> None:
        for thing in (self._sftp, self._client):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
        self._sftp = self._client = None

    def __enter__(self) -> "Remote":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sftp(self):
        if self._client is None:
            raise RemoteError(f"{self!r} is not connected")
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
            self._sftp.get_channel().settimeout(self.io_timeout)
        return self._sftp

    # --- commands -----------------------------------------------------------------------------------
    def run(self, command: str, timeout: float | None = None, check: bool = True) -> tuple[int, str]:
        """Run a shell command; (exit code, stdout+stderr). The command line is visible on the host: never put
        a secret in it."""
        if self._client is None:
            raise RemoteError(f"{self!r} is not connected")
        channel = self._client.get_transport().open_session(timeout=self.connect_timeout)
        channel.settimeout(timeout or self.io_timeout)
        channel.set_combine_stderr(True)
        channel.exec_command(command)
        chunks = []
        while True:
            data = channel.recv(65536)
            if not data:
                break
            chunks.append(data)
        code = channel.recv_exit_status()
        channel.close()
        output = b"".join(chunks).decode(errors="replace")
        if check and code != 0:
            raise RemoteError(f"`{command}` on {self.host} exited {code}: {output.strip()[-500:]}")
        return code, output

    # --- files --------------------------------------------------------------------------------------
    def upload_run(self, run_dir: Path, remote_dir: str, extra: dict[str, Path] | None = None) -> list[str]:
        """The staged run folder: the runtime bundle, job.json, `.env` (0600, written as a file, never argv),
        and `extra` files (remote name -> local path). Returns the remote paths written."""
        run_dir = Path(run_dir)
        self.run(f"mkdir -p {shlex.quote(remote_dir)} && chmod 700 {shlex.quote(remote_dir)}")
        files = [(run_dir / name, name) for name in RUNTIME_FILES]
        files += [(Path(local), name) for name, local in (extra or {}).items()]
        total = sum(path.stat().st_size for path, _ in files)
        sftp = self.sftp()
        written = []
        with transfer_progress("upload", total) as advance:
            for local, name in files:
                target = posixpath.join(remote_dir, name)
                sftp.put(str(local), target + ".partial", callback=_delta(advance))
                sftp.posix_rename(target + ".partial", target)
                written.append(target)
            dotenv = run_dir / ".env"
            if dotenv.exists():
                target = posixpath.join(remote_dir, ".env")
                with sftp.open(target, "wb") as handle:
                    handle.chmod(0o600)  # before the first byte: the file is never readable by others
                    handle.write(dotenv.read_bytes())
                sftp.chmod(target, 0o600)
                written.append(target)
        return written

    def fetch(self, remote_path: str, local_dir: Path) -> tuple[int, int]:
        """Copy `remote_path` (a file or a directory, recursively; symlinks kept as symlinks) into `local_dir`.
        A directory's contents land in `local_dir` itself. Returns (files, bytes)."""
        sftp = self.sftp()
        local_dir = Path(local_dir)
        plan: list[tuple[str, Path, int]] = []
        links: list[tuple[str, Path]] = []
        top = sftp.lstat(remote_path)
        if stat.S_ISDIR(top.st_mode):
            self._walk(remote_path, local_dir, plan, links)
        else:
            plan.append((remote_path, local_dir / posixpath.basename(remote_path), top.st_size or 0))
        total = sum(size for _, _, size in plan)
        local_dir.mkdir(parents=True, exist_ok=True)
        with transfer_progress("download", total) as advance:
            for source, target, _size in plan:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                sftp.get(source, str(partial), callback=_delta(advance))
                partial.replace(target)
        for link_target, where in links:
            where.parent.mkdir(parents=True, exist_ok=True)
            if where.is_symlink() or where.exists():
                where.unlink()
            where.symlink_to(link_target)
        return len(plan), total

    def _walk(self, remote: str, local: Path, plan: list, links: list) -> None:
        for entry in self.sftp().listdir_attr(remote):
            source, target = posixpath.join(remote, entry.filename), local / entry.filename
            if stat.S_ISLNK(entry.st_mode):
                links.append((self.sftp().readlink(source), target))
            elif stat.S_ISDIR(entry.st_mode):
                self._walk(source, target, plan, links)
            elif stat.S_ISREG(entry.st_mode):
                plan.append((source, target, entry.st_size or 0))

    def exists(self, remote_path: str) -> bool:
        try:
            self.sftp().lstat(remote_path)
            return True
        except FileNotFoundError:
            return False

    def read_text(self, remote_path: str, offset: int = 0) -> bytes:
        """Bytes of a remote file from `offset`; b"" when it does not exist (yet)."""
        try:
            with self.sftp().open(remote_path, "rb") as handle:
                handle.seek(offset)
                return handle.read()
        except FileNotFoundError:
            return b""

    # --- the runtime --------------------------------------------------------------------------------
    def start_detached(self, remote_dir: str, args: list[str], python: str = "python3") -> int:
        """Start `python trainyard_runtime.pyz job.json <args>` in `remote_dir`, in its own session (setsid,
        nohup), stdin from /dev/null and output to runtime.out, so it lives on when SSH goes away. The log,
        status and output of an earlier run there (a reused OS volume) are moved aside first. Returns its pid."""
        q = shlex.quote
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = " ".join(f"if [ -e {name} ]; then mv {name} {name}.{stamp}; fi;"
                         for name in ("runtime.log", "status.json", "runtime.out"))
        command = " ".join([q(python), "trainyard_runtime.pyz", "job.json", *map(q, args)])
        # `&` binds to the last command only, so $! is the runtime itself (setsid does not fork: a background
        # job of a non-interactive shell is no process-group leader).
        _, out = self.run(f"cd {q(remote_dir)} || exit 1; {aside} "
                          f"setsid nohup {command} > runtime.out 2>&1 < /dev/null & echo $!")
        try:
            return int(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RemoteError(f"could not start the runtime on {self.host}: {out.strip()[-500:]}") from None

    def alive(self, pid: int) -> bool:
        code, _ = self.run(f"kill -0 {int(pid)}", check=False)
        return code == 0

    def read_status(self, remote_dir: str) -> dict | None:
        """status.json of the runtime, or None while it has not written one. Raises on a lost connection."""
        raw = self.read_text(posixpath.join(remote_dir, "status.json"))
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:  # never half-written (os.replace), but be lenient
            return None

    def tail(self, remote_dir: str, poll_seconds: float = 1.0, offset: int | None = None, pid: int | None = None,
             on_poll: Callable[[], None] | None = None) -> Iterator[str]:
        """Yield runtime.log lines as they are written; end when status.json says done/failed/stopped
        (`tail_end` = that state), when the connection drops (`tail_end` = "lost"), or when the runtime
        process `pid` is gone without a final status ("crashed"). `tail_offset` keeps the position, so a
        second tail after a reconnect goes on where this one stopped."""
        log = posixpath.join(remote_dir, "runtime.log")
        if offset is not None:
            self.tail_offset = offset
        self.tail_end = None
        pending = b""
        last_alive_check = time.monotonic()
        errors = _connection_errors()
        while True:
            try:
                chunk = self.read_text(log, self.tail_offset)
                status = self.read_status(remote_dir)
                crashed = False
                if pid is not None and time.monotonic() - last_alive_check > 5:
                    last_alive_check = time.monotonic()
                    crashed = status is None or status.get("state") not in TERMINAL_STATES
                    crashed = crashed and not self.alive(pid)
            except errors:
                self.tail_end = "lost"
                if pending:
                    yield pending.decode(errors="replace")
                return
            self.tail_offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
            if status is not None:
                self.last_status = status
            state = (status or {}).get("state")
            if state in TERMINAL_STATES or crashed:
                try:  # the log is complete before the final status is written: read what is left
                    rest = pending + self.read_text(log, self.tail_offset)
                    self.tail_offset += len(rest) - len(pending)
                except errors:
                    rest = pending
                for line in rest.decode(errors="replace").splitlines():
                    yield line
                self.tail_end = state if state in TERMINAL_STATES else "crashed"
                return
            if on_poll is not None:
                on_poll()
            time.sleep(poll_seconds)


def _delta(advance: Callable[[int], None]) -> Callable[[int, int], None]:
    """paramiko reports (bytes so far, total) per file; the bar wants increments."""
    seen = [0]

    def callback(done: int, _total: int) -> None:
        advance(done - seen[0])
        seen[0] = done

    return callback


@contextmanager
def transfer_progress(what: str, total: int):
    """A rich progress bar (bytes, speed) for transfers of 1 MB and more; silent below that."""
    if total < PROGRESS_MIN_BYTES:
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from helpers.console import console

    columns = [TextColumn(f"[bold]{what}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console(), transient=False) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n: progress.advance(task, n)


def public_key(private_key: Path) -> str:
    """The public half of a private key file: its .pub beside it, else derived from the key (paramiko)."""
    pub = private_key.with_name(private_key.name + ".pub")
    if pub.is_file():
        return " ".join(pub.read_text().split()[:2])
    import paramiko

    key = paramiko.PKey.from_path(str(private_key))
    return f"{key.get_name()} {key.get_base64()}"
