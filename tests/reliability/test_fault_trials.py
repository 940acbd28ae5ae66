"""Fault trials: a training run on an emulated RunPod pod or Verda spot instance, with one fault per trial, chosen by
a seeded RNG (the seed is printed; `--trial-seed N` replays a series):

  kill      the orchestrator (`invoke <provider>.train`) is SIGKILLed at a random phase: before create returns,
            while waiting for the instance, during upload, during training, during fetch; then `invoke cleanup --yes`
            (phase "cleanup": killed in training, and the first `invoke cleanup --yes` is SIGKILLed too, mid-way)
  preempt   the instance is preempted at a random step (once or twice; sometimes the relaunch again while it boots);
            `--recover` (the default for spot) relaunches it and the run resumes from the store
  api       bursts of HTTP 500/502/503/429 on the provider API: create (Verda: created, then a 500), status polls,
            terminate, the offers list
  ssh       the instance's SSH connections are killed (the launcher reconnects); or its sshd and the instance dies
            with it (the provider says it stopped, the run is relaunched); or its sshd and the machine runs on, billing
            (the launcher's reconnects fail, it ends the instance through the API and relaunches); or the machine
            boots but never opens SSH (the launcher ends it at the time limit + grace, exit 1)

Every trial ends with the same checks: no instance left (the emulators' live lists, spend no longer rising, no
live ledger line), no checkpoint lost (the store's newest checkpoint is complete and loadable, and no checkpoint a
runtime reported synced is missing from it), steps lost per preemption <= save_freq + the steps done while the
newest checkpoint waited for and went through its upload (harness.loss_bound). `--trials N` (default 6: CI; `make
reliability` runs 50). A summary table is printed and asserted on.
"""

from __future__ import annotations

import os
import random
import signal
import re
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from tests.reliability.harness import (PROVIDERS, World, loss_bound, resumed_of, steps_of, store_check, synced_of)

pytestmark = pytest.mark.slow

KINDS = ("kill", "preempt", "api", "ssh")
SSH_FAULTS = ("connections", "sshd", "sshd-alive", "never")
PHASES = ("create", "waiting", "upload", "training", "fetch", "cleanup")


@dataclass
class Trial:
    index: int
    kind: str
    provider: str
    fault: str = ""
    code: int | None = None
    expected: tuple[int, ...] = (0,)
    leaks: list[str] = field(default_factory=list)
    checkpoint_lost: str = ""
    preemptions: int = 0
    recoveries: int = 0
    losses: list[tuple[int, int]] = field(default_factory=list)  # (steps lost, allowed) per preemption at a step
    error: str = ""
    seconds: float = 0.0
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return (not self.error and not self.leaks and not self.checkpoint_lost and self.code in self.expected
                and all(lost <= allowed for lost, allowed in self.losses))


def test_fault_trials(tmp_path, hub_server, request, capsys):
    count = request.config.getoption("--trials")
    seed = request.config.getoption("--trial-seed")
    seed = seed if seed is not None else int(os.environ.get("TRAINYARD_TRIAL_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    with capsys.disabled():
        print(f"\nfault trials: {count}, seed {seed} (replay: --trial-seed {seed})", flush=True)
    phases = list(PHASES)
    rng.shuffle(phases)
    trials: list[Trial] = []
    kinds_seen = Counter()
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        provider = PROVIDERS[(index + index // len(KINDS)) % 2]
        trial = Trial(index, kind, provider)
        nth = kinds_seen[kind]
        kinds_seen[kind] += 1
        world = World(tmp_path / f"trial-{index}", hub_server, runpod_boot_s=0.5)
        started = time.monotonic()
        try:
            {"kill": run_kill, "preempt": run_preempt, "api": run_api, "ssh": run_ssh}[kind](world, trial, rng, nth, phases)
            check_end(world, trial)
        except Exception as exc:  # noqa: BLE001 - a trial that breaks is a failed trial, the others still run
            trial.error = f"{type(exc).__name__}: {str(exc)[:300]}"
        finally:
            trial.seconds = time.monotonic() - started
            world.stop()
        trials.append(trial)
        with capsys.disabled():
            losses = ", ".join(f"{a}<={b}" for a, b in trial.losses)
            print(f"  trial {index:2d} {provider:6s} {trial.fault:28s} exit {trial.code} "
                  f"{'ok' if trial.ok else 'FAILED'} {trial.seconds:5.1f}s"
                  + (f" steps lost {losses}" if losses else "")
                  + (f" leaks {trial.leaks}" if trial.leaks else "")
                  + (f" {trial.checkpoint_lost}" if trial.checkpoint_lost else "")
                  + (f" {trial.error}" if trial.error else ""), flush=True)

    summary = summarize(trials, seed)
    with capsys.disabled():
        print(summary, flush=True)
    failed = [t for t in trials if not t.ok]
    assert len(trials) == count
    assert sum(len(t.leaks) for t in trials) == 0, summary
    assert sum(1 for t in trials if t.checkpoint_lost) == 0, summary
    assert all(lost <= allowed for t in trials for lost, allowed in t.losses), summary
    assert not failed, summary + "\n" + "\n".join(f"trial {t.index}: {t}" for t in failed)


def summarize(trials: list[Trial], seed: int) -> str:
    rows = []
    for kind in KINDS:
        mine = [t for t in trials if t.kind == kind]
        if not mine:
            continue
        faults = Counter(re.sub(r"@\d+", "@step", t.fault) for t in mine)
        losses = [lost for t in mine for lost, _ in t.losses]
        allowed = [a for t in mine for _, a in t.losses]
        rows.append([kind, len(mine), ", ".join(f"{f} x{n}" for f, n in sorted(faults.items())),
                     sum(1 for t in mine if t.ok), sum(len(t.leaks) for t in mine),
                     sum(1 for t in mine if t.checkpoint_lost), sum(t.preemptions for t in mine),
                     sum(t.recoveries for t in mine), f"{max(losses)} (allowed {max(allowed)})" if losses else "-"])
    total_losses = [lost for t in trials for lost, _ in t.losses]
    rows.append(["all", len(trials), f"{sum(1 for t in trials if t.fault)} faults", sum(1 for t in trials if t.ok),
                 sum(len(t.leaks) for t in trials), sum(1 for t in trials if t.checkpoint_lost),
                 sum(t.preemptions for t in trials), sum(t.recoveries for t in trials),
                 max(total_losses) if total_losses else "-"])
    header = ["kind", "trials", "faults", "ok", "leaked instances", "lost checkpoints", "preemptions", "relaunches",
              "max steps lost"]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([f"fault trials summary (seed {seed})", line(header), line(["-" * w for w in widths])]
                     + [line(r) for r in rows])


# ------------------------------------------------------------------------------------------------ the faults


def run_kill(world: World, trial: Trial, rng: random.Random, nth: int, phases: list[str]) -> None:
    phase = phases[nth % len(phases)]
    run_id = f"t{trial.index}-kill-{phase}"
    config = world.config(run_id, trial.provider, steps=30, save_freq=10, pace=0.05,
                          payload_kb=2048 if phase == "fetch" else 4)
    orchestrator = world.train(trial.provider, config)
    try:
        if phase == "create":  # the ledger line is written before the create call: kill as soon as it is there
            deadline = time.monotonic() + 60
            while not world.instances(run_id) and time.monotonic() < deadline and orchestrator.process.poll() is None:
                time.sleep(0.005)
        elif phase == "waiting":
            orchestrator.wait_for(r"ordered at \$", 60)
        elif phase == "upload":
            orchestrator.wait_for(r"connecting over SSH", 60)
        elif phase in ("training", "cleanup"):
            entry = world.wait_instance(run_id, trial.provider)
            world.wait_step(trial.provider, entry, rng.randint(2, 20))
        else:
            orchestrator.wait_for(r"^run done", 90)
        finished = orchestrator.process.poll() is not None
    finally:
        orchestrator.kill()
    trial.fault = f"kill:{phase}" + (" (too late)" if finished else "")
    trial.code, trial.expected = orchestrator.process.returncode, (-9, 0)
    if phase == "cleanup":  # the cleanup itself dies: after its list, while its ends are out, or before it confirms
        first = world.invoke("cleanup", "--yes")
        first.wait_for(rng.choice([r"instances to end", r"ending|ended", r"ended"]), 60)
        time.sleep(rng.uniform(0, 0.3))
        first.kill()
    code, output = world.cleanup()
    assert code == 0, output[-2000:]
    trial.run_id = run_id


def run_preempt(world: World, trial: Trial, rng: random.Random, nth: int, phases: list[str]) -> None:
    run_id = f"t{trial.index}-preempt"
    steps, save_freq, pace = 60, 10, 0.05
    config = world.config(run_id, trial.provider, steps=steps, save_freq=save_freq, pace=pace)
    orchestrator = world.train(trial.provider, config)
    kills = rng.choice([1, 2])
    resumed = 0
    try:
        for j in range(kills):
            entry = world.wait_instance(run_id, trial.provider, j, timeout=90)
            if j > 0 and rng.random() < 1 / 2:  # the relaunched instance is taken away again while it starts
                world.preempt(trial.provider, entry)
                trial.preemptions += 1
                trial.fault += "+boot"
                continue
            if j > 0:
                found = world.wait_log(trial.provider, entry, r"resuming from step \d+|\] starting: ", 60)
                assert found, f"relaunch {j} never started training"
                resumed = resumed_of(world.log(trial.provider, entry)) or 0
            low = resumed + 3
            if low > steps - 8:
                break
            target = rng.randint(low, steps - 8)
            assert world.wait_step(trial.provider, entry, target, 90), f"never reached step {target}"
            world.preempt(trial.provider, entry)
            trial.preemptions += 1
            trial.fault += f"@{target}"
        trial.code = orchestrator.wait(240)
    finally:
        if orchestrator.process.poll() is None:
            orchestrator.kill()
    trial.fault = f"preempt{trial.fault}"
    measure_losses(world, trial, run_id, save_freq, pace)
    trial.run_id = run_id
    assert trial.code == 0, orchestrator.output[-3000:]


def run_api(world: World, trial: Trial, rng: random.Random, nth: int, phases: list[str]) -> None:
    run_id = f"t{trial.index}-api"
    config = world.config(run_id, trial.provider, steps=20, save_freq=10, pace=0.03)
    injected = []
    if trial.provider == "runpod":
        choices = [("podRentInterruptable", 500, 2), ("getPod", 429, 3), ("deletePod", 503, 2), ("listGpuTypes", 502, 1),
                   ("gpuTypes", 502, 1)]
        for op, status, most in rng.sample(choices, rng.randint(2, len(choices))):
            n = rng.randint(1, most)
            world.runpod.fail_next(n, status, op=op, html=status == 502)
            injected.append(f"{op}:{status}x{n}")
    else:
        choices = [("/instances", "POST", 500, True), ("/instances/", "GET", 429, False), ("/instances", "PUT", 503, False),
                   ("/instance-types", "GET", 500, False)]
        for path, method, status, after in rng.sample(choices, rng.randint(2, len(choices))):
            n = 1 if method == "POST" else rng.randint(1, 3)
            world.verda.fail_next(n, status, path=path, method=method, after_effect=after)
            injected.append(f"{method}{path}:{status}x{n}" + (" (after effect)" if after else ""))
    orchestrator = world.train(trial.provider, config)
    trial.code = orchestrator.wait(240)
    trial.fault = "api:" + "+".join(sorted({i.split(":")[1].split("x")[0] for i in injected}))
    trial.run_id = run_id
    if trial.provider == "runpod":
        hit = sum(1 for c in world.runpod.calls if c.get("injected"))
    else:
        hit = sum(1 for c in world.verda.calls if c["status"] >= 429)
    assert hit >= 1, f"no injected failure was hit: {injected}"
    assert trial.code == 0, orchestrator.output[-3000:]


def run_ssh(world: World, trial: Trial, rng: random.Random, nth: int, phases: list[str]) -> None:
    run_id = f"t{trial.index}-ssh"
    steps, save_freq, pace = 50, 10, 0.05
    config = world.config(run_id, trial.provider, steps=steps, save_freq=save_freq, pace=pace)
    what = SSH_FAULTS[(nth + nth // 4) % len(SSH_FAULTS)]  # every 4 ssh trials: each fault; every 8: on both providers
    if what == "never":
        return run_ssh_never(world, trial, run_id)
    orchestrator = world.train(trial.provider, config)
    try:
        entry = world.wait_instance(run_id, trial.provider)
        target = rng.randint(5, steps - 15)
        assert world.wait_step(trial.provider, entry, target, 90)
        if what == "sshd-alive":
            world.host(trial.provider, entry).kill_sshd()  # every sshd process; the machine runs on
        else:
            assert world.kill_sshd(trial.provider, entry, connections_only=what == "connections"), "no sshd to kill"
        if what != "connections":
            trial.preemptions += 1
        trial.code = orchestrator.wait(240)
    finally:
        if orchestrator.process.poll() is None:
            orchestrator.kill()
    trial.fault = f"ssh:{what}@{target}"
    trial.run_id = run_id
    if what == "connections":
        assert len([e for e in world.instances(run_id) if e.get("instance_id")]) == 1, "a dropped connection relaunched"
    else:
        measure_losses(world, trial, run_id, save_freq, pace)
    assert trial.code == 0, orchestrator.output[-3000:]


def run_ssh_never(world: World, trial: Trial, run_id: str) -> None:
    """The machine boots (running, billing) but never answers on SSH: ended at the time limit + grace, one line."""
    world.emulator(trial.provider).ssh_answers = False
    config = world.config(run_id, trial.provider, steps=50, limits={"time_limit": "15s", "grace_s": 3},
                          **({"runpod": {"mode": "ssh"}} if trial.provider == "runpod" else {}))
    orchestrator = world.train(trial.provider, config)
    trial.fault, trial.expected = "ssh:never", (1,)
    try:
        trial.code = orchestrator.wait(120)
    finally:
        if orchestrator.process.poll() is None:
            orchestrator.kill()
    assert "never answered on SSH" in orchestrator.output and "Traceback" not in orchestrator.output, \
        orchestrator.output[-3000:]


# ------------------------------------------------------------------------------------------------ the checks


def measure_losses(world: World, trial: Trial, run_id: str, save_freq: int, pace: float) -> None:
    """Per lost instance that trained: the steps it had done minus the step its successor resumed from."""
    launched = [e for e in world.instances(run_id) if e.get("instance_id")]
    trial.recoveries = sum(1 for e in launched if e.get("recovery"))
    logs = [world.log(trial.provider, e) for e in launched]
    for before, after in zip(logs, logs[1:]):
        done, resumed = steps_of(before), resumed_of(after)
        if not done or resumed is None:  # taken away while booting: nothing trained there
            continue
        trial.losses.append((done - resumed, loss_bound(save_freq, pace, [before, after])))


def check_end(world: World, trial: Trial) -> None:
    trial.leaks = world.leaks()
    off_spec = world.contract_violations()
    assert not off_spec, f"off the provider's OpenAPI file: {off_spec[:3]}"
    run_id = trial.run_id
    if run_id is None:
        return
    check = store_check(run_id, payload_kb=2048 if trial.fault.startswith("kill:fetch") else 4)
    reported = [s for e in world.instances(run_id) if e.get("instance_id")
                for s, _ in synced_of(world.log(trial.provider, e))]
    if not check["ok"]:
        trial.checkpoint_lost = f"store: {check['why']}"
    elif reported and (check["latest"] or 0) < max(reported):
        trial.checkpoint_lost = f"step {max(reported)} was reported synced, the store has {check['latest']}"


# ------------------------------------------------------------------------------ a Verda instance that is still booting


def test_kills_and_ctrl_c_while_a_verda_instance_boots_leave_nothing_billing(tmp_path, hub_server, capsys):
    """The orchestrator SIGKILLed (then `invoke cleanup --yes`) or interrupted (Ctrl-C) while its Verda instance is
    `new`, `validating` or `pending` (the states the Go SDK and CLI name before running; the emulator walks them,
    order [INF]). A delete is refused while an instance boots, so the one who deletes asks again until it is
    accepted: 0 instances left, no ledger line open, no spend still rising."""
    from emulators.verda_api import LONG_BOOT

    rows = []
    for index, (state, fault) in enumerate((s, f) for s in ("new", "validating", "pending") for f in ("kill", "ctrl-c")):
        world = World(tmp_path / f"boot-{index}", hub_server, verda_order_s=2.0, verda_boot_states=LONG_BOOT)
        try:
            run_id = f"boot-{state}-{fault}"
            orchestrator = world.train("verda", world.config(run_id, "verda", steps=20))
            deadline, seen = time.monotonic() + 60, None
            while time.monotonic() < deadline and seen != state:
                entry = next((e for e in world.instances(run_id) if e.get("instance_id")), None)
                seen = world.status("verda", entry["instance_id"]) if entry else None
                time.sleep(0.02)
            assert seen == state, f"never saw {state} (last {seen})"
            if fault == "kill":
                orchestrator.kill()
                code, output = world.cleanup()
                assert code == 0, output[-2000:]
            else:
                orchestrator.process.send_signal(signal.SIGINT)
                assert orchestrator.wait(120) == 130, orchestrator.output[-2000:]
            leaks = world.leaks()
            rows.append((state, fault, world.status("verda", entry["instance_id"]), leaks))
        finally:
            world.stop()
    with capsys.disabled():
        print("\nVerda instance still booting: " + "; ".join(f"{f} in {s} -> {end}, leaks {len(l)}"
                                                            for s, f, end, l in rows), flush=True)
    assert [r[:2] for r in rows] == [(s, f) for s in ("new", "validating", "pending") for f in ("kill", "ctrl-c")]
    assert all(end == "discontinued" and not leaks for _, _, end, leaks in rows), rows
