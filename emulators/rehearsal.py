"""`invoke runpod.train --rehearse`: the whole launch against local stand-ins (the RunPod emulator, a local Hub),
spending nothing. Wiring for the emulators, kept out of the product modules."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from helpers.console import say
from helpers.errors import ConfigError


@contextmanager
def rehearsal(job, root: Path | None = None):
    """`runpod.train --rehearse`: a RunPodEmulator (pods are real sshd hosts on this machine) in a temp folder,
    a local Hub server when the store is hf://, an SSH key, and the environment pointing at them, for the
    whole launch, inside a workspace whose ledger is the rehearsal's own. Yields (job, emulator); the pods run this
    machine's Python (runpod.python -> this interpreter unless set), everything else is as configured. Needs root
    and openssh-server (see packages.apt)."""
    import tempfile

    from emulators.runpod_api import RunPodEmulator
    from emulators.sshhost import generate_keypair
    from helpers.backends.base import descriptor
    from helpers.stores import can_vanish
    from helpers.workspace import current, opened

    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        raise ConfigError("--rehearse", "the emulated pods are sshd hosts in their own namespaces: this needs root "
                          "and openssh-server", "run as root after `make setup-system` (or drop --rehearse)")
    with tempfile.TemporaryDirectory(prefix="trainyard-rehearsal-", dir=root) as tmp:
        tmp = Path(tmp)
        saved = dict(os.environ)
        emu = RunPodEmulator(tmp / "runpod", api_key="rp_rehearsal_key").start()
        hub = None
        try:
            key, _ = generate_keypair(tmp / "keys")
            os.environ.update(emu.sdk_env())
            os.environ["SSH_PRIVATE_KEY_PATH"] = str(key)
            for name in ("SSH_PUBLIC_KEY", "RUNPOD_SSH_PUBLIC_KEY"):
                os.environ.pop(name, None)
            job = job.model_copy(deep=True)
            job.runpod.ssh_private_key = None
            if job.runpod.python == "python3":
                job.runpod.python = sys.executable
            if job.store.startswith("hf://") or can_vanish(job, descriptor("runpod"), job.limits.recover):
                from emulators.hub_server import HubServer

                hub = HubServer(tmp / "hub").start()
                token = "hf_rehearsal_" + "0" * 24
                hub.add_token(token, job.store[5:].split("/")[0] if job.store.startswith("hf://") else "rehearsal")
                os.environ.update({**hub.client_env(token), "HF_HOME": str(tmp / "hf_home")})
                _point_hub_client(hub.url, tmp / "hf_home")
            say(f"rehearsal: RunPod emulator at {emu.url} (pods are sshd hosts under {tmp}), "
                + (f"local Hub at {hub.url}, " if hub else "") + f"pods run {job.runpod.python}")
            here = current()
            with opened(here.env_file, here.runs_dir, ledger_path=tmp / "ledger.jsonl"):
                yield job, emu
        finally:
            live = emu.live_pods()
            emu.stop()
            if record := saved.get("TRAINYARD_REHEARSAL_CALLS"):  # tests check them against RunPod's OpenAPI file
                Path(record).write_text(json.dumps(emu.calls, default=str))
            if hub is not None:
                hub.stop()
            os.environ.clear()
            os.environ.update(saved)
            say(f"rehearsal over: {len(live)} pod(s) were still live and are now terminated" if live else
                "rehearsal over: no pod left")


def _point_hub_client(url: str, hf_home: Path) -> None:
    """huggingface_hub reads its endpoint at import time: point an already imported client at the local Hub."""
    if "huggingface_hub" not in sys.modules:
        return
    from huggingface_hub import constants

    for name, value in {"ENDPOINT": url, "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
                        "HF_HUB_DISABLE_XET": False, "HF_HUB_CACHE": str(hf_home / "hub")}.items():
        setattr(constants, name, value)
