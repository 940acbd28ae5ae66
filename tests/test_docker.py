"""Docker images (docker/*.Dockerfile): linted with hadolint, build context and `docker build` command rendering.

No Docker engine runs here, so the images are linted, not built: `invoke docker.build` says so and prints the
exact command to run where one does.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers.cli import docker as docker_cli
from helpers.config import load_job

REPO = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "-r", str(REPO)]
BIN = Path(sys.executable).parent
STACKS = docker_cli.STACKS


def instructions(stack: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments left out."""
    text = docker_cli.dockerfile(stack).read_text()
    text = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


def arg_defaults(stack: str) -> dict[str, str]:
    found = {}
    for op, rest in instructions(stack):
        if op == "ARG":
            name, _, default = rest.partition("=")
            found[name] = default
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_hadolint_passes(stack):
    done = subprocess.run([str(BIN / "hadolint"), str(docker_cli.dockerfile(stack))], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("stack", STACKS)
def test_dockerfile_shape(stack):
    ops = instructions(stack)
    bases = [rest for op, rest in ops if op == "FROM"]
    assert bases[-1].startswith("${CUDA_IMAGE}") and arg_defaults(stack)["CUDA_IMAGE"].startswith("nvidia/cuda:")
    users = [rest for op, rest in ops if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    copies = [rest for op, rest in ops if op == "COPY" and "--from=" not in rest]
    sources = {word for rest in copies for word in rest.split()[:-1] if not word.startswith("--")}
    assert sources == {"trainyard_runtime.pyz", "train_wrapper.sh"}  # exactly what the prepared context holds
    envs = " ".join(rest for op, rest in ops if op == "ENV")
    assert "TRAINYARD_RUNTIME=/opt/trainyard/trainyard_runtime.pyz" in envs and "TRAINYARD_SKIP_SETUP=1" in envs


@pytest.mark.parametrize("stack", STACKS)
def test_task_build_args_are_the_dockerfile_defaults(stack):
    declared = arg_defaults(stack)
    for name, value in docker_cli.DEFAULT_BUILD_ARGS[stack].items():
        assert name in declared, f"{stack}: build arg {name} is not an ARG of the Dockerfile"
        assert declared[name] == value, (name, declared[name], value)


def test_lerobot_image_defaults_are_the_runtimes_current_release():
    from helpers.runtime import lerobot_versions

    assert arg_defaults("lerobot")["LEROBOT_VERSION"] == lerobot_versions.DEFAULT
    assert arg_defaults("lerobot")["LEROBOT_SPEC"] == lerobot_versions.requirement(lerobot_versions.DEFAULT, set())


@pytest.mark.parametrize("stack", STACKS)
def test_prepared_context_holds_the_runtime(tmp_path, stack):
    context = docker_cli.prepare_context(stack, root=tmp_path)
    assert sorted(p.name for p in context.iterdir()) == ["train_wrapper.sh", "trainyard_runtime.pyz"]
    assert os.access(context / "train_wrapper.sh", os.X_OK)
    with zipfile.ZipFile(context / "trainyard_runtime.pyz") as bundle:
        assert "helpers/runtime/run.py" in bundle.namelist()
    done = subprocess.run([sys.executable, str(context / "trainyard_runtime.pyz"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--skip-setup" in done.stdout
    docker_cli.prepare_context(stack, root=tmp_path)  # a second build starts from a clean context
    assert len(list(context.iterdir())) == 2


def test_build_command_rendering(tmp_path):
    context = tmp_path / "ctx"
    argv = docker_cli.build_command("openpi", "you/openpi_train:1", context, "linux/amd64",
                                    docker_cli.build_args("openpi", overrides={"OPENPI_REPO": "https://example.org/fork.git",
                                                                           "OPENPI_REF": "abc123"}))
    assert argv == ["docker", "build", "--platform", "linux/amd64", "-f", str(REPO / "docker" / "openpi.Dockerfile"),
                    "--build-arg", "OPENPI_REPO=https://example.org/fork.git", "--build-arg", "OPENPI_REF=abc123",
                    "-t", "you/openpi_train:1", str(context)]
    lerobot = docker_cli.build_args("lerobot", extras=" smolvla, peft ")
    assert lerobot == {"LEROBOT_VERSION": "0.6.1", "LEROBOT_SPEC": "lerobot[training,peft,smolvla]==0.6.1"}
    assert docker_cli.build_args("open_r1") == {"VLLM_VERSION": "0.8.5.post1", "FLASH_ATTN_VERSION": "2.7.4.post1",
                                                "OPEN_R1_REF": "main"}
    assert docker_cli.push_command("you/x:1") == ["docker", "push", "you/x:1"]
    from helpers.errors import ConfigError

    with pytest.raises(ConfigError, match="only the lerobot stack takes extras"):
        docker_cli.build_args("openpi", extras="pi")


@pytest.mark.parametrize("config,version,spec", [
    ("configs/pi05.yaml", None, "lerobot[training,pi]==0.6.1"), ("configs/smolvla.yaml", None, "lerobot[training,smolvla]==0.6.1"),
    ("configs/act.yaml", None, "lerobot[training]==0.6.1"), ("configs/act.yaml", "0.4.4", "lerobot==0.4.4"),
    ("configs/pi05.yaml", "0.4.4", "lerobot[pi] @ git+https://github.com/huggingface/lerobot.git@v0.4.4")])
def test_the_image_installs_what_the_runtime_would_for_the_config(config, version, spec):
    job = load_job(REPO / config, {"lerobot.version": version} if version else {}, environ={})
    assert docker_cli.lerobot_args(job) == {"LEROBOT_VERSION": version or "0.6.1", "LEROBOT_SPEC": spec}


def _invoke(args: list[str], cwd: Path, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(INVOKE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_invoke_docker_build_dry_run_prints_the_exact_command(tmp_path):
    done = _invoke(["docker.build", "--stack", "lerobot", "--tag", "you/lerobot-train:0.6.1", "--extras", "smolvla",
                    "--platform", "linux/arm64", "--build-arg", "CUDA_IMAGE=nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04",
                    "--dry-run"], tmp_path)
    assert done.returncode == 0, done.stderr
    command = [line for line in done.stdout.splitlines() if line.startswith("docker build")]
    assert shlex.split(command[0]) == [
        "docker", "build", "--platform", "linux/arm64", "-f", str(REPO / "docker" / "lerobot.Dockerfile"),
        "--build-arg", "LEROBOT_VERSION=0.6.1", "--build-arg", "LEROBOT_SPEC=lerobot[training,smolvla]==0.6.1",
        "--build-arg", "CUDA_IMAGE=nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04",
        "-t", "you/lerobot-train:0.6.1", "runs/docker/lerobot"]
    assert (tmp_path / "runs" / "docker" / "lerobot" / "trainyard_runtime.pyz").is_file()


def test_invoke_docker_build_from_a_config(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text((REPO / "configs" / "pi05.yaml").read_text() + "\ndocker: {tag: lab/pi05-train:1}\n")
    done = _invoke(["docker.build", "--config", str(config), "--dry-run", "--push"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--build-arg 'LEROBOT_SPEC=lerobot[training,pi]==0.6.1' -t lab/pi05-train:1 runs/docker/lerobot" in done.stdout
    assert "--platform linux/amd64" in done.stdout
    assert "docker push lab/pi05-train:1" in done.stdout


def test_without_a_docker_engine_the_build_explains(tmp_path):
    """Here no engine runs: the task prints the command, then one line saying why nothing was built."""
    done = _invoke(["docker.build", "--stack", "openpi", "--tag", "you/openpi_train:1"], tmp_path, path="/usr/bin:/bin")
    assert done.returncode == 2
    assert "docker build --platform linux/amd64" in done.stdout
    assert done.stderr.startswith("error: not built: the docker command is not installed")
    assert len(done.stderr.strip().splitlines()) == 1
    done = _invoke(["docker.push", "--tag", "you/openpi_train:1"], tmp_path, path="/usr/bin:/bin")
    assert done.returncode == 2 and "not pushed" in done.stderr


def test_bad_flags_are_one_line_errors(tmp_path):
    done = _invoke(["docker.build", "--stack", "tensorflow", "--tag", "x", "--dry-run"], tmp_path)
    assert done.returncode == 2 and "'tensorflow' is not a stack" in done.stderr
    done = _invoke(["docker.build", "--stack", "openpi", "--dry-run"], tmp_path)
    assert done.returncode == 2 and "--tag" in done.stderr
    done = _invoke(["docker.build", "--stack", "openpi", "--tag", "x", "--build-arg", "NOEQUALS", "--dry-run"], tmp_path)
    assert done.returncode == 2 and "KEY=VALUE" in done.stderr
