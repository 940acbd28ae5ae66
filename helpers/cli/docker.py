"""docker.*: the training images (docker/<stack>.Dockerfile) with the runtime bundle inside, for CHTC and pods.

The build context is a small folder the task prepares (runs/docker/<stack>/: the runtime bundle and the CHTC
wrapper), never the repository, so builds are fast and send nothing private.
"""

from __future__ import annotations

from pathlib import Path

from invoke import Exit, task

from helpers.cli.common import CONFIG_HELP, friendly

REPO = Path(__file__).resolve().parents[2]
STACKS = ("lerobot", "openpi", "open_r1")
CONTEXT_ROOT = Path("runs") / "docker"
# What each Dockerfile takes (its ARG defaults are the same values, so a plain `docker build` gives the same image).
DEFAULT_BUILD_ARGS = {
    "lerobot": {"LEROBOT_VERSION": "0.6.1", "LEROBOT_SPEC": "lerobot[training]==0.6.1"},  # lerobot_versions.DEFAULT
    "openpi": {"OPENPI_REPO": "https://github.com/Physical-Intelligence/openpi.git", "OPENPI_REF": "main"},
    "open_r1": {"VLLM_VERSION": "0.8.5.post1", "FLASH_ATTN_VERSION": "2.7.4.post1", "OPEN_R1_REF": "main"},
}


def dockerfile(stack: str) -> Path:
    return REPO / "docker" / f"{stack}.Dockerfile"


def lerobot_args(job=None, extras: str | None = None) -> dict[str, str]:
    """LEROBOT_VERSION and LEROBOT_SPEC (the one install requirement) as the runtime would install them: the config's
    `lerobot.version` and `lerobot.install` (default: the current release), its policies' extras, or `extras` given."""
    from helpers.runtime import environment, lerobot_versions

    version = job.lerobot.version if job is not None else lerobot_versions.DEFAULT
    if extras is None and job is not None and job.framework == "lerobot":
        spec = environment.install_spec(job.model_dump(mode="json"))[-1][0]
    else:
        wanted = [e.strip() for e in (extras or "").split(",") if e.strip()]
        spec = lerobot_versions.requirement(version, set(), extras=wanted,
                                            install=job.lerobot.install if job is not None else None)
    return {"LEROBOT_VERSION": version, "LEROBOT_SPEC": spec}


def build_args(stack: str, job=None, extras: str | None = None, overrides: dict[str, str] | None = None) -> dict[str, str]:
    args = dict(DEFAULT_BUILD_ARGS[stack])
    if extras is not None and stack != "lerobot":
        from helpers.errors import ConfigError

        raise ConfigError("--extras", "only the lerobot stack takes extras", "drop --extras, or use --build-arg")
    if stack == "lerobot":
        args.update(lerobot_args(job, extras))
    for key, value in (overrides or {}).items():
        args[key] = value
    return args


def prepare_context(stack: str, root: Path = CONTEXT_ROOT) -> Path:
    """runs/docker/<stack>/ with exactly what the Dockerfile copies: the runtime bundle and the CHTC wrapper."""
    import shutil

    from helpers.bundle import build_bundle

    context = root / stack
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    build_bundle(context)
    shutil.copyfile(REPO / "chtc" / "train_wrapper.sh", context / "train_wrapper.sh")
    (context / "train_wrapper.sh").chmod(0o755)
    return context


def build_command(stack: str, tag: str, context: Path, platform: str = "linux/amd64", args: dict[str, str] | None = None) -> list[str]:
    argv = ["docker", "build", "--platform", platform, "-f", str(dockerfile(stack))]
    for key, value in (args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    return argv + ["-t", tag, str(context)]


def push_command(tag: str) -> list[str]:
    return ["docker", "push", tag]


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    import shutil
    import subprocess

    if not shutil.which("docker"):
        return "the docker command is not installed"
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"no Docker engine answers ({lines[-1] if lines else 'docker info failed'})"
    return None


def _parse_build_args(items: list[str] | None) -> dict[str, str]:
    from helpers.errors import ConfigError

    parsed = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("--build-arg", f"'{item}' is not KEY=VALUE", "write e.g. --build-arg OPENPI_REF=<commit>")
        parsed[key] = value
    return parsed


def _resolve(stack, tag, platform, config):
    """Flags > the config's docker section > defaults."""
    from helpers.errors import ConfigError

    job = None
    if config:
        from helpers.cli.common import load

        job = load(config)
        stack = stack or job.docker.stack or (job.framework if job.framework in STACKS else None)
        tag = tag or job.docker.tag
        platform = platform or job.docker.platform
    if stack not in STACKS:
        raise ConfigError("--stack", f"'{stack}' is not a stack" if stack else "missing", f"use one of {', '.join(STACKS)}")
    if not tag:
        raise ConfigError("--tag", "missing", "give the image name, e.g. --tag you/openpi_train:latest (or docker.tag)")
    return stack, tag, platform or "linux/amd64", job


def _run(argv: list[str], dry_run: bool, what: str) -> None:
    import shlex
    import subprocess

    from helpers.console import say
    from helpers.errors import TrainyardError

    say(shlex.join(argv))
    if dry_run:
        return
    problem = engine_problem()
    if problem:
        raise TrainyardError(f"not {what}: {problem}. Run the command above on a machine with Docker "
                             "(the Dockerfiles are linted by the test suite, not built, where no engine runs)")
    code = subprocess.run(argv).returncode
    if code:
        raise Exit(code=code)


BUILD_HELP = {
    "stack": "lerobot, openpi or open_r1 (default: docker.stack, else the config's framework)",
    "tag": "image name, e.g. you/lerobot-train:0.6.1 (default: docker.tag)",
    "platform": "target platform (default docker.platform, linux/amd64: what CHTC and the clouds run)",
    "config": CONFIG_HELP + " (optional: docker.*; LeRobot's release and extras from lerobot.version and its policies)",
    "extras": "LeRobot extras, e.g. smolvla or pi,peft (lerobot stack; 0.6 adds `training` itself)",
    "build_arg": "KEY=VALUE passed to docker build (repeatable), e.g. OPENPI_REPO=<your fork> OPENPI_REF=<commit>",
    "dry_run": "prepare the context and print the exact command, do not build",
    "push": "push the image after a successful build",
}


@task(iterable=["build_arg"], help=BUILD_HELP)
@friendly
def build(c, stack=None, tag=None, platform=None, config=None, extras=None, build_arg=None, dry_run=False, push=False):
    """Build a training image: prepares runs/docker/<stack>/ (runtime bundle) and runs docker build."""
    from helpers.console import say

    stack, tag, platform, job = _resolve(stack, tag, platform, config)
    context = prepare_context(stack)
    say(f"build context: {context}/ (runtime bundle + CHTC wrapper)")
    _run(build_command(stack, tag, context, platform, build_args(stack, job, extras, _parse_build_args(build_arg))),
         dry_run, "built")
    if push:
        _run(push_command(tag), dry_run, "pushed")


@task(help={"tag": BUILD_HELP["tag"], "config": CONFIG_HELP + " (optional: docker.tag)", "dry_run": "print the command only"})
@friendly
def push(c, tag=None, config=None, dry_run=False):
    """Push a built image (docker login first)."""
    if not tag and config:
        from helpers.cli.common import load

        tag = load(config).docker.tag
    if not tag:
        from helpers.errors import ConfigError

        raise ConfigError("--tag", "missing", "give the image name, e.g. --tag you/openpi_train:latest")
    _run(push_command(tag), dry_run, "pushed")
