"""A Debian 13 (trixie) root made with debootstrap: a host with Python 3.13 for the trainers this machine's Python
3.11 cannot run (LeRobot >= 0.5), and for the HTCondor pool. Built once from Debian's mirror (the one this
machine's apt sources name), cached outside the clone (~/.cache/trainyard/roots/debian13; TRAINYARD_DEBIAN_ROOT
elsewhere); about 40 s from nothing. Commands run in it with `unshare --mount` + `chroot`: its /proc, /dev and /sys
and the folders a test shares are bind-mounted in a private mount namespace, so nothing stays mounted when they end.
It shares this machine's network: the local Hub and the emulators on 127.0.0.1 are reachable from inside. The
host's CA bundle is copied in, so TLS to the package registries works as it does here."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

SUITE = "trixie"
PACKAGES = ("python3", "python3-venv", "ca-certificates", "procps", "make", "minihtcondor")  # the pool: the last two
BOOTSTRAP = ("python3", "python3-venv", "ca-certificates")  # what debootstrap installs; the rest comes from apt
MARKER = ".trainyard-root"  # "<suite> <package,...>": what the root holds; another suite builds it again
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def default_path() -> Path:
    configured = os.environ.get("TRAINYARD_DEBIAN_ROOT")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(configured) if configured else cache / "trainyard" / "roots" / "debian13"


def mirror() -> str:
    """The Debian mirror this machine's apt sources use (deb.debian.org if they name none)."""
    texts = [p.read_text(errors="replace") for p in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
             if p.is_file()]
    for text in texts:
        found = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s",
                                                                                   text, re.M)
        if found:
            return found[1]
    return "http://deb.debian.org/debian"


class DebianRoot:
    def __init__(self, path: Path | None = None, extra_packages: tuple[str, ...] = ()):
        self.path = Path(path or default_path())
        self.packages = tuple(sorted(set(PACKAGES) | set(extra_packages)))

    def ensure(self) -> "DebianRoot":
        """Build the root unless it exists, then install with apt inside it whatever packages it lacks (debootstrap
        itself takes only BOOTSTRAP: its resolver knows no virtual packages, and minihtcondor's dependencies need
        one, python3-cffi-backend-api-min); refresh the CA bundle and resolv.conf either way."""
        marker = self.path / MARKER
        if not marker.is_file() or marker.read_text().split()[:1] != [SUITE]:
            if shutil.which("debootstrap") is None:
                raise RuntimeError("debootstrap is missing: run `make setup-system` (packages.apt)")
            building = self.path.with_name(self.path.name + ".building")
            shutil.rmtree(building, ignore_errors=True)
            building.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BOOTSTRAP)}", SUITE,
                                   str(building), mirror()], capture_output=True, text=True)
            if done.returncode != 0:
                log = building / "debootstrap/debootstrap.log"
                raise RuntimeError(f"debootstrap {SUITE} failed:\n{done.stderr[-2000:]}"
                                   f"{log.read_text(errors='replace')[-3000:] if log.is_file() else ''}")
            (building / MARKER).write_text(f"{SUITE} {','.join(BOOTSTRAP)}")
            shutil.rmtree(self.path, ignore_errors=True)
            building.rename(self.path)  # whole or not at all: a build cut short is never taken for a root
        self._refresh()
        have = set(marker.read_text().split()[1].split(","))
        missing = sorted(set(self.packages) - have)
        if missing:
            done = self.run(["/bin/sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                             "-qq --no-install-recommends " + " ".join(missing)], timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"apt-get install {' '.join(missing)} in {self.path} failed:\n{done.stdout[-2000:]}"
                                   f"{done.stderr[-2000:]}")
            marker.write_text(f"{SUITE} {','.join(sorted(have | set(missing)))}")
        return self

    def _refresh(self) -> None:
        if CA_BUNDLE.is_file():
            shutil.copyfile(CA_BUNDLE, self.path / "etc/ssl/certs/ca-certificates.crt")
        shutil.copyfile("/etc/resolv.conf", self.path / "etc/resolv.conf")

    def command(self, argv: list[str], *, shared: dict[Path, str] | None = None, cwd: str = "/",
                env: dict[str, str] | None = None) -> list[str]:
        """argv as a command line of this machine that runs it inside the root. `shared`: host folder -> path
        inside; `env`: the whole environment inside (HOME, PATH and the CA bundle's variables are added)."""
        mounts = [f"mount --bind /proc {self.path}/proc", f"mount --rbind /dev {self.path}/dev",
                  f"mount --bind /sys {self.path}/sys"]
        for host, inside in (shared or {}).items():
            target = self.path / inside.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            mounts.append(f"mount --bind {shlex.quote(str(host))} {shlex.quote(str(target))}")
        inside_env = {"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                      "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", **(env or {})}
        run = ["chroot", str(self.path), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in inside_env.items()),
               "/bin/sh", "-c", f"cd {shlex.quote(cwd)} && exec {shlex.join(argv)}"]
        return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                " && ".join(mounts) + " && exec " + shlex.join(run)]

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run argv inside the root and wait (capture_output, text); kwargs as for `command`."""
        timeout = kwargs.pop("timeout", 600)
        return subprocess.run(self.command(argv, **kwargs), capture_output=True, text=True, timeout=timeout)
