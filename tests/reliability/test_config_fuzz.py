"""Config fuzzing: mutated job configs (hypothesis) through `invoke runpod.train --dry-run`, with the RunPod emulator
and the local Hub running. Every outcome must be a plan (exit 0, "plan for ...") or one line on stderr
(`error: <file>: <key>: <problem> — <fix>`, exit 1/2) — never a traceback — and nothing that costs money may reach
the API (the emulator's call log: no create/deploy/resume call, no pod).

The mutations start from a `command` job, a LeRobot job, seed 000's config.yaml (custom YAML tags) and the example
configs: values of every type and shape put at known keys (GPU names, counts, durations, modes, prices ...),
keys deleted, unknown and misspelt keys added, and raw-text damage to the YAML itself. They run in this process
through invoke's own Program (the task's whole load path: flag parsing, YAML, seed formats, validation, secrets,
live offers, Hub check, planning, printing), and a sample again as real `invoke` processes, whose exit codes must
match.
"""

from __future__ import annotations

import contextlib
import copy
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.fixtures_hub import HUB_USER
from tests.openapi_contract import RUNPOD, runpod_exchanges
from tests.reliability.harness import INVOKE, REPO

pytestmark = pytest.mark.slow

EXAMPLES = 220
COSTLY = {"createPod", "podFindAndDeployOnDemand", "podRentInterruptable", "deployCpuPod", "podResume", "podBidResume"}

BASES = {
    "command": {
        "job": {"name": "fuzz"}, "framework": "command", "command": {"run": "python train.py"},
        "training": {"steps": 100, "save_freq": 10, "batch_size": 8},
        "checkpoint": {"store": f"hf://{HUB_USER}/fuzz-ckpt"},
        "resources": {"gpu": "RTX 4090", "gpu_count": 1, "spot": True},
        "limits": {"time_limit": "2h", "budget_usd": 5, "max_recoveries": 3},
        "runpod": {"mode": "ssh", "poll_seconds": 1},
    },
    "lerobot": {
        "job": {"name": "fuzz-act"}, "framework": "lerobot", "dataset": {"repo_id": f"{HUB_USER}/dataset"},
        "policy": {"type": "act", "options": {"dim_model": 64}}, "training": {"steps": 1000, "save_freq": 100},
        "resources": {"gpu": ["RTX 4090", "L40S"]}, "runpod": {"mode": "start_command"},
        "model": {"params": 50_000_000},
    },
}
TEXT_BASES = [REPO / "configs" / "seeds" / "runpod_config.yaml", REPO / "configs" / "act.yaml",
              REPO / "configs" / "command.yaml", REPO / "configs" / "open_r1_grpo.yaml"]
KEYS = [
    "job.name", "job.run_id", "framework", "backend", "command.run", "training.steps", "training.save_freq",
    "training.batch_size", "checkpoint.store", "checkpoint.upload_poll_seconds", "checkpoint.keep", "resources.gpu",
    "resources.gpu_count", "resources.spot", "resources.cloud", "resources.min_vram_gb", "resources.max_price_per_hour",
    "resources.location", "limits.time_limit", "limits.timeout", "limits.budget_usd", "limits.max_recoveries",
    "limits.end_when_done", "runpod.mode", "runpod.name", "runpod.image", "runpod.template_id", "runpod.bid_per_gpu",
    "runpod.poll_seconds", "runpod.volume_gb", "runpod.python", "runpod.remote_dir", "notify.webhook_url",
    "policy.type", "policy.path", "dataset.repo_id", "model.params", "model.method", "wandb.enable", "runs",
    "open_r1.model", "verda.location",
]
INTERESTING = {
    "resources.gpu": ["H100", "h100", "RTX 4090", "NVIDIA GeForce RTX 4090", "B300", "TPU", "", 4090, ["A100", "nope"], []],
    "resources.gpu_count": [0, 1, 2, 3, 8, 64, -1, "2", 1.5],
    "limits.time_limit": ["90m", "2h", "1-00:00:00", "1:30", "-5", "abc", 0, 1e300, "9999999d"],
    "framework": ["lerobot", "openpi", "open_r1", "command", "LeRobot", ""],
    "runpod.mode": ["ssh", "start_command", "SSH", "serverless"],
    "runpod.python": ["python3", "/usr/bin/python3", "python3; rm -rf /", "py thon"],
    "runpod.name": ['my "pod"', "pod\nname", "[ty-fake-abcdef]", "x" * 300],
    "training.steps": [0, -1, 1, 10**12, "100", 2.5],
    "checkpoint.store": ["hf://", "hf://a", "hf://org/repo", "/tmp/store", "", "s3://bucket"],
    "resources.cloud": ["secure", "community", "any", "moon"],
    "policy.type": ["act", "ACT", "pi0", "SmolVLA", "gpt"],
}
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**15), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.sampled_from(["90m", "2h", "1e9", "null", "~", "[1, 2]", "{a: 1}", "!CMD TRAIN", "0x1F"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)
KEY_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=14)

MUTATIONS = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), VALUES),
    st.tuples(st.just("interesting"), st.sampled_from(sorted(INTERESTING)), st.integers(0, 99)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("unknown"), KEY_TEXT, VALUES),
    st.tuples(st.just("typo"), st.sampled_from(KEYS), st.integers(0, 99)),
)
CASES = st.one_of(
    st.tuples(st.just("dict"), st.sampled_from(sorted(BASES)), st.lists(MUTATIONS, min_size=1, max_size=4)),
    st.tuples(st.just("text"), st.sampled_from(range(len(TEXT_BASES))),
              st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["delete", "dup", "char", "indent"]),
                                 st.characters(codec="utf-8")), min_size=1, max_size=3)),
)


def _set(data: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value


def _delete(data: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
    node.pop(leaf, None)


def render(case) -> str:
    """The config text for one generated case."""
    kind, base, edits = case
    if kind == "text":
        lines = TEXT_BASES[base].read_text().splitlines()
        for position, what, char in edits:
            i = position % max(1, len(lines))
            if not lines:
                break
            if what == "delete":
                del lines[i]
            elif what == "dup":
                lines.insert(i, lines[i])
            elif what == "indent":
                lines[i] = " " + lines[i]
            elif lines[i]:
                j = position % len(lines[i])
                lines[i] = lines[i][:j] + char + lines[i][j + 1:]
        return "\n".join(lines) + "\n"
    data = copy.deepcopy(BASES[base])
    for op, key, value in edits:
        if op == "set":
            _set(data, key, value)
        elif op == "interesting":
            choices = INTERESTING[key]
            _set(data, key, choices[value % len(choices)])
        elif op == "delete":
            _delete(data, key)
        elif op == "unknown":
            _set(data, key if "." in key.strip(".") else f"runpod.{key}", value)
        else:  # typo: swap two letters of the leaf
            leaf = key.split(".")[-1]
            i = value % max(1, len(leaf) - 1)
            typo = leaf[:i] + leaf[i + 1:i + 2] + leaf[i:i + 1] + leaf[i + 2:]
            if typo != leaf:
                _delete(data, key)
                _set(data, ".".join(key.split(".")[:-1] + [typo]), 1)
    return yaml.safe_dump(data, allow_unicode=True)


def run_in_process(argv: list[str], monkeypatch) -> tuple[int, str, str]:
    """`invoke <argv>` through invoke's Program in this process: (exit code, stdout, stderr). Anything other than
    an exit escapes (a traceback: the test fails with it)."""
    from invoke import Program

    import tasks

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "argv", ["invoke", *argv])  # seed 000's toggles read sys.argv
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            Program(namespace=tasks.namespace, name="Trainyard", binary="invoke").run(["invoke", *argv], exit=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def judge(code: int, out: str, err: str) -> str:
    """"plan" or "error"; AssertionError for anything else."""
    assert "Traceback" not in out + err, f"traceback:\n{out}\n{err}"
    if code == 0:
        assert "plan for " in out, f"exit 0 without a plan:\n{out}\n{err}"
        return "plan"
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert code in (1, 2), f"exit {code}:\n{out}\n{err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line (exit {code}):\n{err}"
    return "error"


@pytest.fixture
def fuzz_env(tmp_path, hub_server, monkeypatch):
    from emulators.runpod_api import RunPodEmulator

    emu = RunPodEmulator(tmp_path / "runpod", ssh=False).start()
    home = tmp_path / "home"
    home.mkdir()
    for key, value in {**emu.sdk_env(home), "TRAINYARD_LEDGER": str(tmp_path / "ledger.jsonl"), "COLUMNS": "200"}.items():
        monkeypatch.setenv(key, value)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    try:
        yield emu, work
    finally:
        emu.stop()
    RUNPOD.check(runpod_exchanges(emu.calls))


def test_mutated_configs_give_a_plan_or_one_line(fuzz_env, monkeypatch, capsys):
    emu, work = fuzz_env
    outcomes: list[tuple[str, int, Path]] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(CASES)
    @example(("dict", "command", [("interesting", "resources.gpu", 0)]))  # H100: valid, so plans are always among them
    @example(("dict", "command", [("interesting", "runpod.mode", 1)]))
    @example(("dict", "command", [("interesting", "limits.time_limit", 0)]))
    @example(("dict", "command", [("interesting", "resources.gpu_count", 12)]))  # 3 GPUs: RunPod rents none, said offline
    def one(case):
        path = work / f"fuzz-{len(outcomes)}.yaml"
        path.write_text(render(case))
        before = sum(emu.call_counts().values())
        code, out, err = run_in_process(["runpod.train", "-c", str(path), "--dry-run"], monkeypatch)
        kind = judge(code, out, err)
        if code == 2:  # bad input is refused before any network call
            assert sum(emu.call_counts().values()) == before, (path.read_text(), err)
        outcomes.append((kind, code, path))

    one()
    kinds = {k: sum(1 for o in outcomes if o[0] == k) for k in ("plan", "error")}
    bad_input = sum(1 for o in outcomes if o[1] == 2)
    with capsys.disabled():
        print(f"\nconfig fuzzing: {len(outcomes)} mutated configs: {kinds['plan']} plans, {kinds['error']} one-line "
              f"errors ({bad_input} bad input, refused with 0 API calls), 0 tracebacks; API calls in all (plans "
              f"read the offers): {dict(emu.call_counts())}", flush=True)
    assert len(outcomes) >= 200
    assert kinds["plan"] >= 3 and kinds["error"] >= 50, kinds  # both kinds of outcome are exercised
    assert not COSTLY & set(emu.call_counts()) and emu.pods() == [], emu.call_counts()

    # a sample again as real processes: same exit code, same one-line shape
    sample = [o for o in outcomes if o[0] == "plan"][:3] + [o for o in outcomes if o[0] == "error"][:5]
    for _kind, code, path in sample:
        done = subprocess.run([INVOKE, "-r", str(REPO), "runpod.train", "-c", str(path), "--dry-run"], cwd=work,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        assert done.returncode == code, (path.read_text(), done.stdout[-2000:], done.stderr[-2000:])
        judge(done.returncode, done.stdout, done.stderr)
    assert not COSTLY & set(emu.call_counts()) and emu.pods() == []
