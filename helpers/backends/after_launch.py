"""What `<backend>.status / logs / fetch / stop` do once the ledger knows a cloud run's instances: each backend
passes its ledger name, its provider and where its runs live on the host (`remote_dir`)."""

from __future__ import annotations

import json
import posixpath
import time
from pathlib import Path

from helpers.backends.provider import RUNNING, call
from helpers.console import say
from helpers.errors import ConfigError, ProviderError
from helpers.runtime.progress import steps_at_risk
from helpers.workspace import current


def ledger_entries(provider_name: str, run_id: str | None = None, live_only: bool = True) -> list[dict]:
    """The provider's instances in the ledger (oldest first): of one run, live only (not yet ended) by default."""
    from helpers.ledger import LIVE_STATES

    entries = [e for (p, _), e in current().ledger.entries().items() if p == provider_name]
    entries = [e for e in entries if (not run_id or e.get("run_id") == run_id)
               and (not live_only or e["state"] in LIVE_STATES)]
    return sorted(entries, key=lambda e: e.get("created", e["time"]))


def newest_entry(provider_name: str, run_id: str, noun: str) -> dict:
    """The run's newest live instance (after relaunches the run has several), or one line saying there is none."""
    live = [e for e in ledger_entries(provider_name, run_id) if e.get("instance_id")]
    if not live:
        raise ConfigError("--run-id", f"no live {noun} for run '{run_id}' in the ledger",
                          f"see `invoke {provider_name}.status` (a finished run fetched its outputs and log already)")
    return live[-1]


def connect(provider, entry: dict, wait_seconds: float = 30.0):
    """An open SSH connection (helpers.remote.Remote) to a running instance of the ledger."""
    from helpers.remote import Remote

    state, host, port = provider.get(entry["instance_id"])
    if state != RUNNING:
        raise ProviderError(f"{entry['id']} ({entry['instance_id']}) is {state}: nothing to connect to")
    return Remote(host, port, "root", entry.get("ssh_key")).connect(wait_seconds)


STATUS_PROBE_S = 2.0  # a status table waits this long for instances' SSH ports, all at once, then says "unreachable"
STATUS_CONNECT_S = 5.0  # and this long for the SSH session of one that answered
STATUS_WORKERS = 16  # SSH sessions at once


def answering(addresses: set[tuple[str, int]], timeout: float = STATUS_PROBE_S) -> set[tuple[str, int]]:
    """The addresses whose TCP port accepts a connection within `timeout`, tried all at once (non-blocking
    connects in one selector): hundreds of instances cost one timeout, not one each."""
    import selectors
    import socket

    pending: dict[socket.socket, tuple[str, int]] = {}
    up: set[tuple[str, int]] = set()
    with selectors.DefaultSelector() as selector:
        for address in addresses:
            sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(address)
            selector.register(sock, selectors.EVENT_WRITE)
            pending[sock] = address
        deadline = time.monotonic() + timeout
        while pending and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                sock = key.fileobj
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    up.add(pending[sock])
                selector.unregister(sock)
                sock.close()
                del pending[sock]
        for sock in pending:
            sock.close()
    return up


def listed_match(listed: list[dict]):
    """entry -> its instance in the provider's list (or None): by instance id, else by its `ty-` name (a ledger line
    written before the create answered has no id)."""
    by_id, by_name = {i["id"]: i for i in listed}, {i["name"]: i for i in listed}
    return lambda entry: by_id.get(entry.get("instance_id")) or by_name.get(entry["id"])


def status_rows(provider, provider_name: str, run_id: str | None, remote_dir: str, readable) -> list[tuple[dict, str, str]]:
    """(ledger entry, the provider's state, the run's progress) for each live instance of the ledger, from one list
    of the provider's instances (`list_instances`, with each one's `ssh` address when it has one); the instances'
    SSH ports are probed all at once (`answering`: an instance that does not answer is "unreachable" after
    STATUS_PROBE_S), and the run's state, step, loss and synced step are read over SSH from the ones that answer,
    STATUS_WORKERS at a time. `readable(entry, listed)`: whether this instance's run is read over SSH at all.
    `provider` None (no credentials): the ledger's word only."""
    from concurrent.futures import ThreadPoolExecutor

    from helpers.remote import Remote

    entries = ledger_entries(provider_name, run_id)
    if provider is None or not entries:
        return [(e, e["state"], "-") for e in entries]
    try:
        listed = call(provider.list_instances, what=f"{provider_name}: listing instances")
    except Exception as exc:  # noqa: BLE001 - a status table shows what it can
        return [(e, e["state"], f"(provider: {type(exc).__name__})") for e in entries]
    match = listed_match(listed)
    found = {e["id"]: match(e) for e in entries}
    wanted = {f["ssh"] for e in entries if (f := found[e["id"]]) and f.get("ssh") and readable(e, f)}
    up = answering({(h, int(p)) for h, p in wanted})

    def row(entry: dict) -> tuple[dict, str, str]:
        listed_one = found[entry["id"]]
        if listed_one is None:
            return entry, "gone", "-"
        address = listed_one.get("ssh")
        if not (address and readable(entry, listed_one)):
            return entry, listed_one["state"], "-"
        if (address[0], int(address[1])) not in up:
            return entry, listed_one["state"], "unreachable"
        try:
            with Remote(address[0], address[1], "root", entry.get("ssh_key"), connect_timeout=STATUS_CONNECT_S,
                        io_timeout=10).connect(STATUS_CONNECT_S) as remote:
                s = remote.read_status(entry.get("remote_dir") or remote_dir) or {}
        except Exception:  # noqa: BLE001 - one that does not answer must not hold up the table
            return entry, listed_one["state"], "unreachable"
        deadman = s.get("deadman") or ""
        alarm = f"; DEAD-MAN {deadman[:120]}" if deadman.startswith(("failed", "not armed")) else ""
        alarm += f"; SYNC FAILED {steps_at_risk(s)} steps at risk" if s.get("sync_failed") else ""
        return entry, listed_one["state"], (f"{s.get('state')} {s.get('step')}/{s.get('total')} loss {s.get('loss')} "
                                            f"synced {s.get('synced_step')}{alarm}")

    with ThreadPoolExecutor(max_workers=min(STATUS_WORKERS, len(entries))) as pool:
        return list(pool.map(row, entries))


def show_log(provider_name: str, noun: str, run_id: str, open_remote, remote_dir: str, follow_lines: bool) -> None:
    """Print the run's runtime.log from its live instance (`open_remote(entry)` connects), following it with a
    progress bar if asked; after the run, the copy fetched to runs/<run_id>/runtime.log."""
    from helpers.follow import follow

    try:
        entry = newest_entry(provider_name, run_id, noun)
    except ConfigError:
        local = current().runs_dir / run_id / "runtime.log"
        if not local.is_file():
            raise
        say(local.read_text())
        return
    remote_dir = entry.get("remote_dir") or remote_dir
    with open_remote(entry) as remote:
        if follow_lines:
            job = json.loads(remote.read_text(f"{remote_dir}/job.json") or b"{}")
            follow(remote.tail(remote_dir, offset=0), (job.get("config") or {}).get("training", {}).get("steps"))
            say(f"run {remote.tail_end}")
        else:
            say(remote.read_text(f"{remote_dir}/runtime.log").decode(errors="replace"))


def fetch_outputs(provider_name: str, noun: str, run_id: str, open_remote, remote_dir: str,
                  dest: str | Path | None = None) -> Path:
    """Copy the run's output directory from its live instance to runs/<run_id>/outputs (or `dest`)."""
    entry = newest_entry(provider_name, run_id, noun)
    remote_dir = entry.get("remote_dir") or remote_dir
    with open_remote(entry) as remote:
        job = json.loads(remote.read_text(f"{remote_dir}/job.json") or b"{}")
        out = (job.get("derived") or {}).get("output_dir") or "outputs"
        remote_out = out if posixpath.isabs(out) else posixpath.join(remote_dir, out)
        local = Path(dest) if dest else current().runs_dir / run_id / "outputs"
        files, size = remote.fetch(remote_out, local)
    say(f"{files} files ({size / 1e6:.1f} MB) from {remote_out} -> {local}/")
    return local


def end_now(provider, provider_name: str, noun: str, run_id: str | None, instance_id: str | None, **terminate_kw) -> None:
    """`<backend>.terminate`: end the run's live instance(s), or one by id (also one the ledger does not know), and
    mark the ledger. `terminate_kw` goes to provider.terminate (Verda: keep_disk)."""
    if not (run_id or instance_id):
        raise ConfigError("--run-id", f"which {noun}?", f"pass --run-id (see `invoke {provider_name}.status`) or the {noun} id")
    entries = [e for e in ledger_entries(provider_name, run_id) if not instance_id or e.get("instance_id") == instance_id]
    if not entries and instance_id:
        entries = [{"id": instance_id, "instance_id": instance_id}]
    if not entries:
        raise ConfigError("--run-id", f"no live {noun} for run '{run_id}' in the ledger", f"see `invoke {provider_name}.status`")
    for entry in entries:
        iid = entry.get("instance_id") or call(provider.find, entry["id"], what=f"looking for the {noun}")
        if iid:
            note = call(provider.terminate, iid, what=f"terminating {entry['id']}", **terminate_kw)
            say(f"{noun} {entry['id']} ({iid}) terminated. {note or ''}")
        current().ledger.record(provider_name, entry["id"], "terminated", instance_id=iid, ended=time.time())
