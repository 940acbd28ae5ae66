"""The seeds' own config files, loaded unchanged and converted to the one job schema.

- Seed 000 (train_in_runpod.py) `config.yaml`: `pod:`, `options:`, `runtime: cmds:` with the tags
  `!CMD HF_LOGIN|WANDB_LOGIN|TRAIN|STOP` and `!MODEL_TYPE ACT|SmolVLA|XVLA|pi0|pi05|pi0_fast|GROOT`.
- Seed 001 (verda_lerobot_manager.py) `train.remote.yaml`: its sections already are schema sections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import yaml

from helpers.errors import ConfigError

# The seeds' model types (seed 000, case-sensitive there) and the LeRobot policy type each one trains.
MODEL_TYPES = {
    "ACT": "act",
    "SmolVLA": "smolvla",
    "XVLA": "xvla",
    "pi0": "pi0",
    "pi05": "pi05",
    "pi0_fast": "pi0_fast",
    "GROOT": "groot",
}

CMD_NAMES = ("HF_LOGIN", "WANDB_LOGIN", "TRAIN", "STOP")
SEED000_NAMESPACE = "eunjuri"  # the Hub namespace seed 000's train-<model>.sh scripts prefix to bare repo ids


@dataclass(frozen=True)
class Cmd:
    name: str


class ModelType(str):
    pass


def _cmd(loader: yaml.SafeLoader, node: yaml.Node) -> Cmd:
    name = loader.construct_scalar(node).strip()
    if name not in CMD_NAMES:
        raise ConfigError(f"line {node.start_mark.line + 1}", f"unknown !CMD tag '{name}'", "use one of " + ", ".join(CMD_NAMES))
    return Cmd(name)


def _model_type(loader: yaml.SafeLoader, node: yaml.Node) -> ModelType:
    name = loader.construct_scalar(node).strip()
    if name not in MODEL_TYPES:
        raise ConfigError(
            f"line {node.start_mark.line + 1}", f"unknown !MODEL_TYPE '{name}' (case-sensitive)", "use one of " + ", ".join(MODEL_TYPES)
        )
    return ModelType(name)


def _unique_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A key given twice in one mapping (two `training:` sections) is refused: YAML would keep the last silently."""
    seen: dict[Any, int] = {}
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(str(key), f"given twice in one mapping (lines {seen[key]} and {line})",
                              "keep one of them (merge the two into one section)")
        seen[key] = line
    return loader.construct_mapping(node, deep=True)


def loader() -> type[yaml.SafeLoader]:
    """A safe YAML loader that also understands seed 000's tags."""

    class TrainyardLoader(yaml.SafeLoader):
        pass

    TrainyardLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_keys)
    TrainyardLoader.add_constructor("!CMD", _cmd)
    TrainyardLoader.add_constructor("!MODEL_TYPE", _model_type)
    return TrainyardLoader


def convert(data: dict[str, Any]) -> dict[str, Any]:
    """Return `data` in the job schema; seed 000 files are recognised by their `pod`/`options`/`runtime` keys."""
    if not ({"pod", "options", "runtime"} & set(data)):
        return data
    unknown = set(data) - {"pod", "options", "runtime"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], "unknown key in a train_in_runpod config.yaml", "use pod:, options: and runtime:")
    return _from_runpod_seed(data)


def _section(data: dict[str, Any], key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    section = data.get(key) or {}
    if not isinstance(section, dict):
        raise ConfigError(key, "must be a mapping", f"write {key}: followed by indented keys")
    for name in section:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", "unknown key", "allowed: " + ", ".join(allowed))
    return section


def _from_runpod_seed(data: dict[str, Any]) -> dict[str, Any]:
    pod = _section(data, "pod", ("name", "template_id", "gpu", "gpu_count", "spot"))
    options = _section(data, "options", ("timeout", "time_limit", "terminate"))
    runtime = _section(data, "runtime", ("cmds", "namespace"))
    namespace = runtime.get("namespace", SEED000_NAMESPACE)
    runs, logins, stop = [], [], False
    for index, entry in enumerate(runtime.get("cmds") or []):
        cmd, body = _split_entry(entry, index)
        if cmd.name == "TRAIN":
            runs.append(_train_run(body, namespace, index))
        elif cmd.name == "STOP":
            stop = True
        else:
            logins.append(cmd.name)
    if not runs:
        raise ConfigError("runtime.cmds", "no !CMD TRAIN entry", "add one: - !CMD TRAIN: with model_type: !MODEL_TYPE ACT and args:")
    name = pod.get("name") or f"python-{' '.join(time.ctime().split()[1:-1])}"
    return {
        "job": {"name": name},
        "backend": "runpod",
        "framework": "lerobot",
        "dataset": {"repo_id": runs[0]["dataset_repo_id"]},
        "policy": {"type": runs[0]["policy_type"], "push_to_hub": True},
        "wandb": {"enable": "WANDB_LOGIN" in logins},
        "runs": runs,
        "resources": {
            "gpu": pod.get("gpu", "NVIDIA RTX 2000 Ada Generation"),
            "gpu_count": pod.get("gpu_count", 1),
            "spot": pod.get("spot", False),
        },
        "limits": {
            "timeout": options.get("timeout", False),
            "time_limit": options.get("time_limit", 3600),
            "terminate_on_stop": options.get("terminate", True),
            "end_when_done": stop,
        },
        "runpod": {"name": name, "template_id": pod.get("template_id", "o6u732ibrq"), "mode": "start_command"},
    }


def _split_entry(entry: Any, index: int) -> tuple[Cmd, dict[str, Any]]:
    key = f"runtime.cmds[{index}]"
    if isinstance(entry, Cmd):
        return entry, {}
    if isinstance(entry, dict):
        cmds = [k for k in entry if isinstance(k, Cmd)]
        if len(cmds) == 1:
            body = {k: v for k, v in entry.items() if not isinstance(k, Cmd)}
            if isinstance(entry[cmds[0]], dict):
                body.update(entry[cmds[0]])
            return cmds[0], body
    raise ConfigError(key, "entry without a !CMD tag", "write e.g. - !CMD TRAIN: (the tag is case-sensitive)")


def _train_run(body: dict[str, Any], namespace: str, index: int) -> dict[str, Any]:
    key = f"runtime.cmds[{index}]"
    model = body.get("model_type")
    if not isinstance(model, ModelType):
        raise ConfigError(f"{key}.model_type", "missing or untagged", "write model_type: !MODEL_TYPE ACT (ACT, SmolVLA, XVLA, pi0, pi05, pi0_fast, GROOT)")
    args = body.get("args") or {}
    for name in ("repo_id", "step"):
        if name not in args:
            raise ConfigError(f"{key}.args.{name}", "missing", "TRAIN needs args.repo_id and args.step")
    repo = str(args["repo_id"])
    dataset = repo if "/" in repo else f"{namespace}/{repo}"
    label = repo.split("/")[-1]
    return {
        "policy_type": MODEL_TYPES[model],
        "dataset_repo_id": dataset,
        "steps": args["step"],
        "job_name": f"{model}_{label}",
        "output_dir": f"outputs/train/{model}_{label}",
        "policy_repo_id": f"{dataset.split('/')[0]}/{model}_policy_{label}",
    }
