"""An emulated cloud instance that is a real SSH host on 127.0.0.1.

Each `SshHost` runs Debian's own `sshd` inside a fresh PID + mount namespace
(`unshare --pid --fork --kill-child --mount --mount-proc`). Inside that namespace:

* `/root` is bind-mounted from `disk` and the volume path (default `/workspace`) from `disk/workspace`,
  so whatever the instance writes survives it, like a kept volume;
* a tiny init (PID 1, stdlib Python) starts `sshd -D -e` and, optionally, a start command, reaps
  orphans, and shuts everything down on SIGTERM (or when sshd exits on its own);
* killing that init (SIGKILL) makes the kernel kill every process of the instance: a preemption;
* SIGUSR1 to init kills every sshd process and nothing else: SSH is dead, the machine runs on (and bills).

Instance control files live in `disk/.sshhost/` (seen as `/root/.sshhost/` inside): sshd_config, the
ed25519 host key (generated once per disk, so the host key survives restarts), authorized_keys, the
init program, `sshd.log`, `command.log`, `command.rc` and `exit.json`.

The instance's environment (`env`) reaches SSH sessions through `~/.ssh/environment`
(`PermitUserEnvironment yes`) and the start command through its process environment.

Needs root, util-linux `unshare`/`mount`, `/usr/sbin/sshd` (package openssh-server) and `ssh-keygen`.
An instance never outlives the Python process that started it: init watches a pipe ("lifeline") whose
only writer is that process, and exits, taking the namespace with it, when the pipe closes.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["SshHost", "SshHostError", "generate_keypair", "free_port", "pids_in_namespace", "ssh_command"]

SSHD = "/usr/sbin/sshd"
INSIDE_RUN = "/root/.sshhost"  # where disk/.sshhost appears inside the instance
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SshHostError(RuntimeError):
    """The instance could not be started or stopped cleanly."""


# ----------------------------------------------------------------------------------------- helpers


def generate_keypair(dir: Path, name: str = "id_ed25519", comment: str = "trainyard-test") -> tuple[Path, str]:
    """Create (once) an ed25519 key pair `dir/name` + `dir/name.pub` with ssh-keygen.

    Returns (private key path, public key text without trailing newline)."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    key = dir / name
    pub = dir / f"{name}.pub"
    if not (key.exists() and pub.exists()):
        key.unlink(missing_ok=True)
        pub.unlink(missing_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
            check=True, stdin=subprocess.DEVNULL, capture_output=True,
        )
    os.chmod(key, 0o600)
    return key, pub.read_text().strip()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_command(port: int, key: Path, *remote: str, user: str = "root", extra: Iterable[str] = ()) -> list[str]:
    """argv for OpenSSH's client to run `remote` on an emulated host (no known_hosts, batch mode)."""
    return [
        "ssh", "-i", str(key), "-p", str(port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
        *extra, f"{user}@127.0.0.1", *remote,
    ]


def _ns_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def pids_in_namespace(ns: str) -> list[int]:
    """Host pids of every live process whose PID namespace is `ns` (e.g. 'pid:[4026532301]')."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ns_of(int(entry)) == ns:
            out.append(int(entry))
    return out


def _children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces/parens, so split after the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def _proc_info(pid: int) -> tuple[int, int | None, str] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    ns_pid = None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            ns_pid = int(line.split()[-1])
    return pid, ns_pid, cmdline


# Every started host, so a normal interpreter exit never leaves one running (a crash is covered by the lifeline).
_LIVE: "weakref.WeakSet[SshHost]" = weakref.WeakSet()


@atexit.register
def _kill_all_at_exit() -> None:
    for host in list(_LIVE):
        try:
            host.kill()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


# ------------------------------------------------------------------------- the init inside the namespace

_INIT_PROGRAM = r'''
import json, os, signal, subprocess, sys, threading, time
cfg_path, lifeline = sys.argv[1], int(sys.argv[2])
cfg = json.load(open(cfg_path))
run = os.path.dirname(cfg_path)
done = []

def write(name, text):
    tmp = os.path.join(run, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(run, name))

def shutdown(reason, rc):
    if done:
        return
    done.append(reason)
    write("exit.json", json.dumps({"reason": reason, "rc": rc, "time": time.time()}))
    try:
        os.kill(-1, signal.SIGTERM)       # every process of this namespace but init
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + float(cfg["grace_s"])
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.02)
    os._exit(rc)                          # init exits -> the kernel SIGKILLs whatever is left

def watch_lifeline():
    while True:
        try:
            if not os.read(lifeline, 64):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    os._exit(137)                         # owner is gone: take the whole instance down at once

def kill_sshd(*_):
    """SSH dies, the machine does not: every sshd process (the listener and the sessions') is killed."""
    sshd_killed.append(True)
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and open(f"/proc/{entry}/comm").read().startswith("sshd"):  # + sshd-session
                os.kill(int(entry), signal.SIGKILL)
        except OSError:
            pass

sshd_killed = []
signal.signal(signal.SIGTERM, lambda *_: shutdown("stopped", 0))
signal.signal(signal.SIGUSR1, kill_sshd)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
threading.Thread(target=watch_lifeline, daemon=True).start()

sshd_log = open(os.path.join(run, "sshd.log"), "ab", buffering=0)
sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", cfg["sshd_config"]],
                        stdin=subprocess.DEVNULL, stdout=sshd_log, stderr=subprocess.STDOUT)
cmd = None
if cfg["command"]:
    env = {"PATH": cfg["path"], "HOME": "/root", "USER": "root", "LOGNAME": "root",
           "SHELL": "/bin/bash", "LANG": "C.UTF-8"}
    env.update(cfg["env"])
    cmd_log = open(os.path.join(run, "command.log"), "ab", buffering=0)
    cmd = subprocess.Popen(["/bin/bash", "-c", cfg["command"]], env=env, cwd="/root",
                           stdin=subprocess.DEVNULL, stdout=cmd_log, stderr=subprocess.STDOUT,
                           start_new_session=True)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        if sshd_killed:  # SSH died, the machine did not: it runs on with nothing in it
            time.sleep(0.2)
            continue
        shutdown("no-processes", 1)
        continue
    if done:
        continue
    if pid == sshd.pid and not sshd_killed:
        shutdown("sshd-exited", 1)
    elif cmd is not None and pid == cmd.pid:
        rc = os.waitstatus_to_exitcode(status)
        write("command.rc", str(rc))
        if cfg["exit_with_command"]:
            shutdown("command-exited", rc if rc >= 0 else 128 - rc)
'''


# -------------------------------------------------------------------------------------------- SshHost


class SshHost:
    """One emulated instance: Debian's sshd on 127.0.0.1 in its own PID + mount namespace, whose /root
    (and /workspace) is bind-mounted from `disk`, so the instance's files survive it (like a kept volume)
    and a preemption kills every process it ran.

    Extra keyword options (all optional):
      exit_with_command   the instance stops when start_command exits (a container), instead of living
                          on (a VM); `exit_reason` is then "command-exited" and `command_returncode` set.
      port_env            names of env vars set to the sshd port at each start (e.g. RUNPOD_TCP_PORT_22).
      volume_mount_path   where `disk/workspace` appears inside (default /workspace).
      hostname            give the instance its own UTS namespace with this hostname.
      grace_s             how long stop() lets processes react to SIGTERM before they are killed.
      host_binds          host directories under /root kept visible (read-only) inside the instance.
                          Default: the Python installation running this module, if it lives under /root
                          (e.g. pyenv), so host interpreters and venvs still work inside.
      on_exit             callback(host) run (in a watcher thread) whenever a started instance ends.
    """

    def __init__(self, disk: Path, authorized_keys: str, env: dict[str, str] | None = None,
                 start_command: str | None = None, *, exit_with_command: bool = False,
                 port_env: Iterable[str] = (), volume_mount_path: str = "/workspace",
                 hostname: str | None = None, grace_s: float = 3.0,
                 host_binds: Iterable[str] | None = None,
                 on_exit: Callable[["SshHost"], None] | None = None) -> None:
        self.disk = Path(disk).absolute()
        self.authorized_keys = authorized_keys
        self.env: dict[str, str] = dict(env or {})
        self.start_command = start_command
        self.exit_with_command = exit_with_command
        self.port_env = tuple(port_env)
        if not volume_mount_path.startswith("/") or volume_mount_path.rstrip("/") in ("", "/root") \
                or volume_mount_path.startswith("/root/") or volume_mount_path.startswith("/proc"):
            raise ValueError(f"volume_mount_path must be an absolute path outside /root and /proc: {volume_mount_path!r}")
        self.volume_mount_path = volume_mount_path.rstrip("/")
        self.hostname = hostname
        self.grace_s = grace_s
        if host_binds is None:
            prefix = os.path.realpath(sys.base_prefix)
            host_binds = [prefix] if prefix.startswith("/root/") else []
        self.host_binds = [os.path.realpath(p) for p in host_binds]
        for p in self.host_binds:
            if not p.startswith("/root/"):
                raise ValueError(f"host_binds are for paths under /root (others are visible anyway): {p}")
        self._callbacks: list[Callable[[SshHost], None]] = [on_exit] if on_exit else []

        self.port: int = 0
        self.exit_reason: str | None = None
        self.pidns: str | None = None
        self.init_pid: int | None = None
        self._proc: subprocess.Popen | None = None
        self._lifeline: int | None = None
        self._watcher: threading.Thread | None = None
        self._requested: str | None = None
        self._lock = threading.RLock()

    # --- paths
    @property
    def run_dir(self) -> Path:
        return self.disk / ".sshhost"

    @property
    def volume_dir(self) -> Path:
        return self.disk / "workspace"

    @property
    def host_public_key(self) -> str:
        """The instance's host key, e.g. for a known_hosts line `[127.0.0.1]:<port> <key>`."""
        return (self.run_dir / "ssh_host_ed25519_key.pub").read_text().split(" #")[0].strip()

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def command_returncode(self) -> int | None:
        """Exit code of start_command, once it has exited (during this or an earlier run)."""
        try:
            return int((self.run_dir / "command.rc").read_text())
        except (OSError, ValueError):
            return None

    def command_log(self) -> str:
        try:
            return (self.run_dir / "command.log").read_text(errors="replace")
        except OSError:
            return ""

    def sshd_log(self) -> str:
        try:
            return (self.run_dir / "sshd.log").read_text(errors="replace")
        except OSError:
            return ""

    def add_exit_callback(self, fn: Callable[["SshHost"], None]) -> None:
        self._callbacks.append(fn)

    def processes(self) -> list[tuple[int, int | None, str]]:
        """(host pid, pid inside the instance, cmdline) of every process of the instance."""
        if not self.pidns:
            return []
        infos = (_proc_info(pid) for pid in pids_in_namespace(self.pidns))
        return [i for i in infos if i is not None]

    # --- lifecycle
    def start(self, port: int = 0) -> int:
        """Boot the instance; returns the sshd port once it accepts SSH connections.

        port=0 picks a free port (retrying if another process grabs it first)."""
        with self._lock:
            if self.running:
                raise SshHostError(f"instance on {self.disk} is already running (port {self.port})")
            self._prepare_disk()
            last_error = ""
            for _attempt in range(6 if port == 0 else 1):
                chosen = port or free_port()
                try:
                    self._launch(chosen)
                    return chosen
                except _PortTaken as exc:
                    last_error = str(exc)
                    continue
            raise SshHostError(f"sshd could not bind a port: {last_error}")

    def kill(self) -> None:
        """Preempt: SIGKILL the namespace's init, so every process of the instance dies at once."""
        self._end("killed", signal.SIGKILL, timeout=10.0)

    def kill_sshd(self) -> None:
        """SSH dies while the machine runs on: every sshd process is killed, every other process lives (a crashed
        sshd, a firewall change, a full disk). Only the provider's API can end the machine now."""
        if self.init_pid is None:
            raise SshHostError("the instance is not running")
        os.kill(self.init_pid, signal.SIGUSR1)

    def stop(self) -> None:
        """Graceful stop: SIGTERM to every process, `grace_s` to exit, then whatever is left is killed."""
        self._end("stopped", signal.SIGTERM, timeout=self.grace_s + 5.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the instance to end on its own; True if it has ended."""
        proc = self._proc
        if proc is None:
            return True
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout)
        return True

    def __enter__(self) -> "SshHost":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on 127.0.0.1:{self.port}" if self.running else f"down ({self.exit_reason})"
        return f"<SshHost {self.disk} {state}>"

    # --- internals
    def _prepare_disk(self) -> None:
        if os.geteuid() != 0:
            raise SshHostError("SshHost needs root (unshare --mount/--pid and sshd)")
        for tool in (SSHD, shutil.which("unshare"), shutil.which("ssh-keygen")):
            if not tool or not os.path.exists(tool):
                raise SshHostError("needs /usr/sbin/sshd (apt-get install openssh-server), unshare and ssh-keygen")
        for value in list(self.env.values()) + list(self.env.keys()):
            if "\n" in value or "\0" in value:
                raise ValueError(f"environment values cannot contain newlines or NUL: {value[:40]!r}")
        run = self.run_dir
        run.mkdir(parents=True, exist_ok=True)
        self.volume_dir.mkdir(parents=True, exist_ok=True)
        (self.disk / ".ssh").mkdir(mode=0o700, exist_ok=True)
        Path(self.volume_mount_path).mkdir(parents=True, exist_ok=True)  # mount point on the host
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)               # sshd's privilege-separation dir
        for p in self.host_binds:
            (self.disk / os.path.relpath(p, "/root")).mkdir(parents=True, exist_ok=True)
        hostkey = run / "ssh_host_ed25519_key"
        if not hostkey.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sshhost", "-f", str(hostkey)],
                           check=True, stdin=subprocess.DEVNULL, capture_output=True)
        os.chmod(hostkey, 0o600)
        ak = run / "authorized_keys"
        ak.write_text(self.authorized_keys.strip() + "\n")
        os.chmod(ak, 0o600)
        (run / "init.py").write_text(_INIT_PROGRAM)
        for stale in ("exit.json", "command.rc"):
            (run / stale).unlink(missing_ok=True)

    def _write_config(self, port: int) -> dict[str, str]:
        run = self.run_dir
        (run / "sshd_config").write_text("\n".join([
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            "AddressFamily inet",
            f"HostKey {INSIDE_RUN}/ssh_host_ed25519_key",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            f"AuthorizedKeysFile {INSIDE_RUN}/authorized_keys",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "UseDNS no",
            "StrictModes no",
            "PermitUserEnvironment yes",
            "PidFile none",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding yes",
            "MaxStartups 100",
            "MaxSessions 100",
            "LoginGraceTime 30",
            "LogLevel INFO",
            "Subsystem sftp internal-sftp",
            "",
        ]))
        env = dict(self.env)
        for name in self.port_env:
            env[name] = str(port)
        envfile = self.disk / ".ssh" / "environment"
        envfile.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        os.chmod(envfile, 0o600)
        return env

    def _launch(self, port: int) -> None:
        env = self._write_config(port)
        run = self.run_dir
        for log in ("sshd.log",):
            (run / log).write_bytes(b"")
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else os.path.realpath(sys.executable)
        (run / "init.json").write_text(json.dumps({
            "sshd_config": f"{INSIDE_RUN}/sshd_config", "command": self.start_command, "env": env,
            "exit_with_command": self.exit_with_command, "grace_s": self.grace_s, "path": BASE_PATH,
        }))
        disk, vol, mnt = str(self.disk), str(self.volume_dir), self.volume_mount_path
        # Bind order matters when the disk itself lives under /root or under the volume mount path.
        binds = [(disk, "/root"), (vol, mnt)]
        if not (disk + "/").startswith(mnt + "/"):
            binds.reverse()
        script = ["set -e"]
        for p in self.host_binds:  # host paths under /root: mounted (read-only) into the disk first,
            inner = _q(os.path.join(disk, os.path.relpath(p, "/root")))  # then carried along by --rbind
            script.append(f"mount --bind {_q(p)} {inner}")
            script.append(f"mount -o remount,bind,ro {inner}")
        for src, dst in binds:
            script.append(f"mount --rbind {_q(src)} {_q(dst)}")
        if self.hostname:
            script.append(f"hostname {_q(self.hostname)}")
        script.append(f'exec {_q(python)} {INSIDE_RUN}/init.py {INSIDE_RUN}/init.json "$1"')
        r, w = os.pipe()
        argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--propagation", "private"]
        if self.hostname:
            argv.append("--uts")
        argv += ["--", "/bin/sh", "-c", "\n".join(script), "sshhost-init", str(r)]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=open(run / "unshare.log", "wb"), pass_fds=(r,),
                                    start_new_session=True, cwd="/")
        finally:
            os.close(r)
        self._proc, self._lifeline, self.port = proc, w, port
        self.exit_reason, self._requested, self.init_pid, self.pidns = None, None, None, None
        try:
            self._wait_ready(proc, port)
        except BaseException:
            self._end("failed-start", signal.SIGKILL, timeout=10.0)
            raise
        _LIVE.add(self)
        self._watcher = threading.Thread(target=self._watch, args=(proc, w), daemon=True,
                                         name=f"sshhost-watch-{port}")
        self._watcher.start()

    def _wait_ready(self, proc: subprocess.Popen, port: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        listening = f"Server listening on 127.0.0.1 port {port}"
        log = self.run_dir / "sshd.log"
        while time.monotonic() < deadline:
            if self.init_pid is None:
                kids = _children_of(proc.pid)
                if kids:
                    self.init_pid = kids[0]
                    self.pidns = _ns_of(self.init_pid)
            if proc.poll() is not None:
                if self.exit_with_command and self.command_returncode is not None:
                    return  # the start command was over before sshd said hello: booted and already ended
                text = log.read_text(errors="replace") if log.exists() else ""
                text += (self.run_dir / "unshare.log").read_text(errors="replace")
                if "Address already in use" in text or "Cannot bind" in text:
                    raise _PortTaken(text.strip()[-300:])
                raise SshHostError(f"instance on {self.disk} died while booting:\n{text.strip()[-2000:]}")
            if self.pidns and listening in log.read_text(errors="replace") and _ssh_banner(port):
                return
            time.sleep(0.02)
        raise SshHostError(f"sshd on port {port} not ready after {timeout}s:\n{self.sshd_log()[-2000:]}")

    def _watch(self, proc: subprocess.Popen, lifeline: int) -> None:
        proc.wait()
        with self._lock:
            if self._lifeline == lifeline:
                self._close_lifeline()
            reason = self._requested
            if reason is None:
                try:
                    reason = json.loads((self.run_dir / "exit.json").read_text())["reason"]
                except (OSError, ValueError, KeyError):
                    reason = "lost"
            self.exit_reason = reason
        _LIVE.discard(self)
        for fn in list(self._callbacks):
            try:
                fn(self)
            except Exception as exc:  # noqa: BLE001 - a callback must not kill the watcher
                print(f"sshhost: exit callback {fn!r} failed: {exc!r}", file=sys.stderr)

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            try:
                os.close(self._lifeline)
            except OSError:
                pass
            self._lifeline = None

    def _end(self, reason: str, sig: int, timeout: float) -> None:
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                self._requested = reason
                target = self.init_pid or (_children_of(proc.pid) or [None])[0]
                try:
                    if target is not None:
                        os.kill(target, sig)
                    else:
                        os.kill(proc.pid, signal.SIGKILL)  # --kill-child takes init down with it
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._requested = "killed"
                if self.init_pid:
                    try:
                        os.kill(self.init_pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.wait(10)
            if self.exit_reason is None and self._requested:
                self.exit_reason = self._requested
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(10)
        with self._lock:
            self._close_lifeline()
        # The kernel reaps a PID namespace before its init's exit is reported; double-check anyway.
        deadline = time.monotonic() + 5.0
        while self.pidns and pids_in_namespace(self.pidns):
            if time.monotonic() > deadline:
                raise SshHostError(f"processes of {self.disk} survived: {self.processes()}")
            time.sleep(0.02)
        _LIVE.discard(self)


class _PortTaken(SshHostError):
    pass


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.settimeout(2.0)
            return s.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False
