"""The LeRobot release a config asks for decides the install, the Python, the policies, the presets and the flag
names (helpers/runtime/lerobot_versions.py, read in each release's wheel); a flag or policy the release lacks is
refused in one line before launch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.bundle import render_commands
from helpers.config import validate
from helpers.errors import ConfigError
from helpers.runtime import environment
from helpers.runtime.lerobot_versions import requirement, resume_problem, translate_flags

REPO = Path(__file__).resolve().parents[1]
INVOKE = str(Path(sys.executable).with_name("invoke"))


def lerobot(version: str | None = None, policy: str = "act", **extra) -> dict:
    data = {"dataset": {"repo_id": "me/data"}, "policy": {"type": policy}, **extra}
    if version:
        data["lerobot"] = {"version": version}
    return data


def test_the_install_follows_the_release():
    assert requirement("0.6.1", {"act"}) == "lerobot[training]==0.6.1"  # 0.6: a plain install cannot train
    assert requirement("0.6.1", {"groot"}) == "lerobot[training,groot]==0.6.1"
    assert requirement("0.6.1", {"pi05"}, peft=True) == "lerobot[training,peft,pi]==0.6.1"  # pi is on PyPI now
    assert requirement("0.5.1", {"pi0"}) == "lerobot[pi]==0.5.1"
    assert requirement("0.4.4", {"act"}) == "lerobot==0.4.4"
    assert requirement("0.4.4", {"pi05"}) == "lerobot[pi] @ git+https://github.com/huggingface/lerobot.git@v0.4.4"
    assert requirement("0.6.1", {"smolvla"}, install="git+https://github.com/me/lerobot.git@fix") == \
        "lerobot[training,smolvla] @ git+https://github.com/me/lerobot.git@fix"
    assert requirement("0.6.1", {"act"}, install="/src/lerobot") == "/src/lerobot[training]"
    assert requirement("0.6.0", {"act"}) == "lerobot[training]==0.6.0"  # a patch of a supported minor
    config = validate(lerobot(policy="groot")).model_dump(mode="json")
    assert environment.install_spec(config) == [["lerobot[training,groot]==0.6.1"]]
    assert environment.env_dir(config).name == "lerobot-0.6.1-training-groot"
    assert environment.python_needed(config) == (3, 12)
    assert environment.python_for(config, host=(3, 11)) == "Python 3.12 (uv fetches it: the host has 3.11)"
    assert environment.python_for(config, host=(3, 13)) == "the host's Python 3.13"
    old = validate(lerobot("0.4.4")).model_dump(mode="json")
    assert environment.python_for(old, host=(3, 11)) == "the host's Python 3.11"


def test_flags_are_renamed_for_the_release_or_refused():
    assert translate_flags("0.6.1", ["--eval_freq=500", "--seed=1"]) == (
        ["--env_eval_freq=500", "--seed=1"], ["--eval_freq -> --env_eval_freq (LeRobot 0.6.1)"])
    assert translate_flags("0.4.4", ["--env_eval_freq=500"])[0] == ["--eval_freq=500"]
    flags, _ = translate_flags("0.6.1", ["--use_rabc=true", "--rabc_kappa=0.02", "--rabc_progress_path=p.parquet"])
    assert flags == ["--sample_weighting.type=rabc", "--sample_weighting.kappa=0.02",
                     "--sample_weighting.progress_path=p.parquet"]
    with pytest.raises(ValueError, match="new in LeRobot 0.6; 0.5.1 has no such flag"):
        translate_flags("0.5.1", ["--sample_weighting.type=rabc"])

    # in a config: translated into the command line, or refused before launch in one line
    job = validate(lerobot(training={"extra_args": ["--eval_freq=500"]}))
    (command,) = render_commands(job, gpus=1)
    assert "--env_eval_freq=500" in command and "--eval_freq" not in command
    with pytest.raises(ConfigError) as refused:
        validate(lerobot("0.4.4", training={"extra_args": ["--sample_weighting.type=rabc"]}))
    assert str(refused.value) == ("training.extra_args: --sample_weighting.type is new in LeRobot 0.6; 0.4.4 has no "
                                  "such flag — set lerobot.version: 0.6.1, or drop the flag")


def test_policies_and_presets_follow_the_release():
    with pytest.raises(ConfigError, match="policy.type: LeRobot 0.6.1 has no policy 'sac' — set lerobot.version to "
                                          "0.4.4 or 0.5.1"):
        validate(lerobot(policy="sac"))
    assert validate(lerobot("0.5.1", policy="sac")).lerobot.version == "0.5.1"
    with pytest.raises(ConfigError, match="LeRobot 0.4.4 has no policy 'molmoact2'"):
        validate(lerobot("0.4.4", policy="molmoact2"))
    with pytest.raises(ConfigError, match="lerobot.version: .*LeRobot 0.3.0 is not one Trainyard knows: use 0.4.4, 0.5.1, 0.6.1"):
        validate(lerobot("0.3.0"))
    # seed 000's `!MODEL_TYPE GROOT`: N1.7 on 0.6, N1.5 where LeRobot still has it
    (current,) = render_commands(validate(lerobot(policy="GROOT")), gpus=1)
    (older,) = render_commands(validate(lerobot("0.5.1", policy="GROOT")), gpus=1)
    assert "--policy.base_model_path=nvidia/GR00T-N1.7-3B" in current
    assert "--policy.base_model_path=nvidia/GR00T-N1.5-3B" in older


def test_resume_across_the_06_line_is_refused_and_said():
    written_by_044 = {"eval_freq": 20000, "use_rabc": False, "steps": 100}
    written_by_061 = {"env_eval_freq": 20000, "sample_weighting": None, "steps": 100}
    assert resume_problem(written_by_044, "0.4.4") is None and resume_problem(written_by_044, "0.5.1") is None
    assert resume_problem(written_by_061, "0.6.0") is None
    assert "written by LeRobot 0.5 or older" in resume_problem(written_by_044, "0.6.1")
    assert "written by LeRobot 0.6 or newer" in resume_problem(written_by_061, "0.4.4")


def test_plan_shows_the_release_the_install_and_the_python(tmp_path):
    def plan(*args: str) -> dict:
        done = subprocess.run([INVOKE, "-r", str(REPO), "plan", "--config", str(REPO / "configs/groot.yaml"),
                               "--offline", "--json", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    major, minor = sys.version_info[:2]
    current = plan()  # the local backend: this machine's Python decides
    here = "the host's Python %d.%d" % (major, minor) if (major, minor) >= (3, 12) else \
        "Python 3.12 (uv fetches it: the host has %d.%d)" % (major, minor)
    assert "nvidia/GR00T-N1.7-3B" in current["command"]
    assert current["trainer"] == f"LeRobot 0.6.1: lerobot[training,groot]==0.6.1 on {here}"
    remote = plan("--backend", "runpod")
    assert remote["trainer"] == ("LeRobot 0.6.1: lerobot[training,groot]==0.6.1 on Python >= 3.12 (the host's, or one "
                                 "uv fetches where it is older)")
    old = plan("--backend", "runpod", "--set", "lerobot.version=0.4.4",
               "--set", "training.extra_args=[\"--env_eval_freq=100\"]")
    assert old["trainer"].startswith("LeRobot 0.4.4: lerobot[groot]==0.4.4 on Python >= 3.10")
    assert "nvidia/GR00T-N1.5-3B" in old["command"][0] and "--eval_freq=100" in old["command"][0]
    text = subprocess.run([INVOKE, "-r", str(REPO), "plan", "--config", str(REPO / "configs/demo_act_cpu.yaml"),
                           "--offline"], capture_output=True, text=True, cwd=tmp_path, timeout=120).stdout
    assert f"trainer: LeRobot 0.4.4: lerobot==0.4.4 on the host's Python {major}.{minor}" in text
