"""The LeRobot releases Trainyard installs, and what differs between them.

Every fact below was read in the release's own wheel (`pip download lerobot==<v> --no-deps --python-version 3.12
--only-binary=:all:`): Requires-Python and the extras from its METADATA, the policy types from the
`register_subclass(...)` names under lerobot/policies/, the flags from lerobot/configs/train.py, GR00T's base model
from lerobot/policies/groot/configuration_groot.py. A patch release of a supported minor (0.5.0, 0.6.0) is treated
as that minor's row. Stdlib only: the launcher (config checks, plan) and the runtime (install, command) share it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

DEFAULT = "0.6.1"
PI_POLICIES = ("pi0", "pi05", "pi0_fast")
_OLD_POLICIES = ("act", "diffusion", "groot", "pi0", "pi0_fast", "pi05", "sac", "reward_classifier", "sarm",
                 "smolvla", "tdmpc", "vqbet", "wall_x", "xvla")


@dataclass(frozen=True)
class Release:
    version: str
    python: tuple[int, int]                 # Requires-Python floor
    policies: tuple[str, ...]               # the policy types it registers
    extras: dict[str, str]                  # policy type -> the PyPI extra that policy needs
    base_extras: tuple[str, ...] = ()       # 0.6: a plain `pip install lerobot` is minimal; training needs [training]
    pi_from_git: bool = False               # 0.4.4's wheel lacks the `pi` extra (a direct-URL dependency, stripped)
    groot_base: str = "nvidia/GR00T-N1.5-3B"
    flags: dict[str, str] = field(default_factory=dict)  # a flag name of other releases -> this release's name

    @property
    def python_text(self) -> str:
        return "%d.%d" % self.python


_EXTRAS_05 = {"smolvla": "smolvla", "groot": "groot", "xvla": "xvla", "wall_x": "wallx", "sarm": "sarm",
              **{p: "pi" for p in PI_POLICIES}}
RELEASES = {
    "0.4.4": Release("0.4.4", (3, 10), _OLD_POLICIES,
                     {k: v for k, v in _EXTRAS_05.items() if v != "pi"}, pi_from_git=True,
                     flags={"env_eval_freq": "eval_freq"}),
    "0.5.1": Release("0.5.1", (3, 12), _OLD_POLICIES + ("multi_task_dit",),
                     {**_EXTRAS_05, "multi_task_dit": "multi-task-dit"}, flags={"env_eval_freq": "eval_freq"}),
    "0.6.1": Release("0.6.1", (3, 12),
                     ("act", "diffusion", "eo1", "evo1", "fastwam", "gaussian_actor", "groot", "lingbot_va",
                      "molmoact2", "multi_task_dit", "pi0", "pi0_fast", "pi05", "smolvla", "tdmpc", "vla_jepa",
                      "vqbet", "wall_x", "xvla"),
                     {**{k: v for k, v in _EXTRAS_05.items() if k != "sarm"}, "diffusion": "diffusion",
                      "multi_task_dit": "multi-task-dit", "molmoact2": "molmoact2", "eo1": "eo1", "fastwam": "fastwam",
                      "evo1": "evo1", "vla_jepa": "vla-jepa", "lingbot_va": "lingbot-va"},
                     base_extras=("training",), groot_base="nvidia/GR00T-N1.7-3B",
                     # train.py: eval_freq became env_eval_freq; the RA-BC fields became sample_weighting.*
                     flags={"eval_freq": "env_eval_freq", "use_rabc": "sample_weighting.type",
                            "rabc_progress_path": "sample_weighting.progress_path", "rabc_kappa": "sample_weighting.kappa",
                            "rabc_epsilon": "sample_weighting.epsilon", "rabc_head_mode": "sample_weighting.head_mode"}),
}
ALL_POLICIES = tuple(sorted({p for r in RELEASES.values() for p in r.policies}))
# What the releases after 0.6.1's `sample_weighting.*` have no older name for.
_NEW_ONLY = ("sample_weighting.",)


def release(version: str) -> Release:
    """The row for `version` (a patch of a supported minor counts as that minor), or ValueError naming them."""
    if version in RELEASES:
        return RELEASES[version]
    minor = ".".join(version.split(".")[:2])
    for known, row in RELEASES.items():
        if known.rsplit(".", 1)[0] == minor and minor != "0.4":
            return dataclasses.replace(row, version=version)
    raise ValueError(f"LeRobot {version} is not one Trainyard knows: use {', '.join(RELEASES)} (or a 0.5.x / 0.6.x)")


def extras_for(version: str, policy_types: set[str], peft: bool = False) -> list[str]:
    """The extras a job needs on this release, the release's own first (0.6: `training`), then the policies'."""
    row = release(version)
    wanted = {row.extras[t] for t in policy_types if t in row.extras} | ({"peft"} if peft else set())
    if policy_types & set(PI_POLICIES) and row.pi_from_git:
        wanted.add("pi")
    return list(row.base_extras) + sorted(wanted - set(row.base_extras))


def requirement(version: str, policy_types: set[str], peft: bool = False, install: str | None = None,
                extras: list[str] | None = None) -> str:
    """The one install requirement: `lerobot[extras]==version`, the git tag where the wheel lacks an extra, or
    `lerobot.install` (a git ref, a fork, a local path) with the same extras. `extras`: given instead (an image)."""
    row = release(version)
    if extras is None:
        extras = extras_for(version, policy_types, peft)
    else:
        extras = list(row.base_extras) + sorted(set(extras) - set(row.base_extras))
    names = f"[{','.join(extras)}]" if extras else ""
    if install:
        return f"lerobot{names} @ {install}" if "://" in install or install.startswith("git+") else f"{install}{names}"
    if "pi" in extras and row.pi_from_git:
        return f"lerobot{names} @ git+https://github.com/huggingface/lerobot.git@v{row.version}"
    return f"lerobot{names}=={row.version}"


def translate_flags(version: str, args: list[str]) -> tuple[list[str], list[str]]:
    """`--key=value` flags (training.extra_args) as this release names them: (flags, notes on what was renamed).
    ValueError for a flag this release has no name for (a newer release's, e.g. sample_weighting on 0.5)."""
    row = release(version)
    out, notes = [], []
    for arg in args:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else (None, "", "")
        if key is None:
            out.append(arg)
            continue
        new = row.flags.get(key)
        if new is None and version_tuple(row.version) < (0, 6) and key.startswith(_NEW_ONLY):
            raise ValueError(f"--{key} is new in LeRobot 0.6; {row.version} has no such flag")
        if new is None:
            out.append(arg)
            continue
        if key == "use_rabc":
            if value.lower() in ("true", "1"):
                out.append("--sample_weighting.type=rabc")
            notes.append(f"--{key}={value} -> --sample_weighting.type=rabc" if value.lower() in ("true", "1")
                         else f"--{key}={value} dropped (no sample weighting is LeRobot {row.version}'s default)")
            continue
        out.append(f"--{new}{sep}{value}")
        notes.append(f"--{key} -> --{new} (LeRobot {row.version})")
    return out, notes


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


def resume_problem(train_config: dict, wanted: str) -> str | None:
    """Why LeRobot `wanted` cannot resume from a checkpoint whose train_config.json is this, or None when it can.
    The file carries the flags of the release that wrote it: 0.6 migrates the old RA-BC fields itself but has no
    `eval_freq`, which every 0.4 / 0.5 file has; a 0.5 or older release has no `env_eval_freq`, which 0.6 writes."""
    written_old, written_new = "eval_freq" in train_config, "env_eval_freq" in train_config
    wanted_old = version_tuple(release(wanted).version) < (0, 6)
    if written_old and not wanted_old:
        return f"the checkpoint was written by LeRobot 0.5 or older (eval_freq), which LeRobot {wanted} cannot read"
    if written_new and wanted_old:
        return f"the checkpoint was written by LeRobot 0.6 or newer (env_eval_freq), which LeRobot {wanted} cannot read"
    return None
