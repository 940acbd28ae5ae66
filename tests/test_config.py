"""The one job config: examples validate, precedence holds, bad input is one line with exit code 2."""

import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.config import load_job, parse_duration
from helpers.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_example_config_validates(path):
    job = load_job(path, environ={})
    assert job.run_id and job.store and job.output_dir


def write(tmp_path, text, name="job.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_seed000_runpod_config_means_the_same(tmp_path):
    job = load_job(REPO / "configs/seeds/runpod_config.yaml", environ={})
    assert job.backend == "runpod" and job.runpod.template_id == "o6u732ibrq" and job.runpod.mode == "start_command"
    assert job.resources.gpu == "NVIDIA RTX 2000 Ada Generation" and job.resources.spot is True
    assert [(r.policy_type, r.steps, r.dataset_repo_id) for r in job.runs] == [
        ("act", 1000, "eunjuri/soft_manip_data"), ("act", 3000, "eunjuri/soft_manip_data")]
    assert job.runs[0].policy_repo_id == "eunjuri/ACT_policy_soft_manip_data"
    assert job.runs[0].output_dir == "outputs/train/ACT_soft_manip_data"
    assert job.limits.timeout is False and job.limits.time_limit == 3600 and job.limits.terminate_on_stop is True
    assert job.limits.end_when_done is True  # `!CMD STOP` present
    assert job.wandb.enable is True  # `!CMD WANDB_LOGIN`
    assert job.job.name.startswith("python-")


def test_seed000_defaults_when_keys_are_missing(tmp_path):
    path = write(tmp_path, "runtime:\n  cmds:\n    - !CMD TRAIN:\n      model_type: !MODEL_TYPE pi05\n      args: {repo_id: ds, step: 10}\n")
    job = load_job(path, environ={})
    assert job.resources.gpu == "NVIDIA RTX 2000 Ada Generation" and job.resources.gpu_count == 1
    assert job.resources.spot is False and job.limits.timeout is False and job.limits.time_limit == 3600
    assert job.runpod.template_id == "o6u732ibrq" and job.limits.end_when_done is False  # no STOP: the pod stays
    assert job.runs[0].policy_type == "pi05"


def test_seed001_train_remote_yaml_means_the_same():
    job = load_job(REPO / "configs/seeds/train.remote.yaml", environ={})
    assert job.store == "hf://your-user/lerobot-checkpoint-private-dataset"
    assert job.checkpoint.upload_every_save and job.checkpoint.upload_poll_seconds == 60
    assert job.accelerate.mixed_precision == "bf16" and job.output_dir == "outputs/train/smolvla_verda"


def test_precedence_cli_over_environment_over_yaml(tmp_path):
    path = write(tmp_path, "dataset: {repo_id: a/b}\npolicy: {type: act}\nwandb: {enable: false}\naccelerate: {num_processes: 2}\n")
    env = {"LEROBOT_WANDB_ENABLE": "true", "LEROBOT_ACCELERATE_NUM_PROCESSES": "4", "LEROBOT_CHECKPOINT_REPO_ID": "me/ckpt"}
    job = load_job(path, environ=env)
    assert job.wandb.enable is True and job.accelerate.num_processes == 4 and job.store == "hf://me/ckpt"
    job = load_job(path, {"accelerate.num_processes": 8}, environ=env)
    assert job.accelerate.num_processes == 8
    assert load_job(path, environ={}).accelerate.num_processes == 2


@pytest.mark.parametrize("value, seconds", [(3600, 3600), ("90m", 5400), ("2h", 7200), ("1:30:00", 5400), ("1-00:00:00", 86400)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


BAD = [
    ("dataset: {repo_id: a/b}\npolicy: {type: act}\ntraning: {steps: 3}\n", "traning", "did you mean 'training'"),
    ("dataset: {repo_id: a/b}\npolicy: {type: act}\ntraining: {stepz: 3}\n", "training.stepz", "did you mean 'training.steps'"),
    ("dataset: {repo_id: a/b}\npolicy: {type: act}\ntraining: {steps: many}\n", "training.steps", "expected"),
    ("dataset: {repo_id: a/b}\npolicy: {type: actt}\n", "policy.type", "did you mean 'act'"),
    ("dataset: {repo_id: a/b}\npolicy: {type: act}\nresources: {spot: maybe}\n", "resources.spot", "expected"),
    ("dataset: {repo_id: a/b}\npolicy: {type: act}\nlimits: {time_limit: soon}\n", "limits.time_limit", "duration"),
    ("policy: {type: act}\n", "dataset.repo_id", "required"),
    ("framework: openpi\n", "openpi.config_name", "required"),
    ("dataset: [1, 2\n", "line", "unreadable YAML"),
    ("runtime:\n  cmds:\n    - !CMD TRAINN: ~\n", "line 3", "unknown !CMD tag 'TRAINN'"),
    ("runtime:\n  cmds:\n    - !CMD TRAIN:\n      model_type: !MODEL_TYPE act\n      args: {repo_id: x, step: 1}\n", "line 4", "case-sensitive"),
    ("- just\n- a list\n", "", "top level must be a mapping"),
]


@pytest.mark.parametrize("text, key, words", BAD)
def test_bad_input_is_one_line_naming_file_and_key(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_job(path, environ={})
    line = str(caught.value)
    assert "\n" not in line and str(path) in line and key in line and words in line


def run_cli(*args, cwd, env=None):
    import os

    return subprocess.run([str(REPO / ".venv/bin/invoke"), "-r", str(REPO), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HOME": str(cwd), **(env or {})})


def test_cli_bad_config_exits_2_without_traceback(tmp_path):
    path = write(tmp_path, "dataset: {repo_id: a/b}\npolicy: {type: act}\ntraning: {steps: 3}\n")
    result = run_cli("local.train", "--config", str(path), "--dry-run", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().count("\n") == 0 and "traning" in result.stderr


def test_cli_missing_secret_names_it_and_the_fix(tmp_path):
    path = write(tmp_path, "dataset: {repo_id: a/b}\npolicy: {type: act}\ncheckpoint: {store: 'hf://me/ckpt'}\n")
    result = run_cli("local.train", "--config", str(path), "--dry-run", cwd=tmp_path, env={"HF_TOKEN": "", "HUGGINGFACE_HUB_TOKEN": ""})
    assert result.returncode == 2 and "HF_TOKEN" in result.stderr and ".env" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_flags_override_yaml_and_dry_run_shows_the_command(tmp_path):
    path = write(tmp_path, "dataset: {repo_id: a/b}\npolicy: {type: act}\ntraining: {steps: 10}\n")
    result = run_cli("local.train", "--config", str(path), "--dry-run", "--steps", "77", "--set", "training.batch_size=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--steps=77" in result.stdout and "--batch_size=3" in result.stdout


# Mutated configs: whatever a user writes, the answer is a ConfigError line, never a traceback.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False), st.text(max_size=12))
KEYS = st.sampled_from(["job", "dataset", "policy", "training", "checkpoint", "resources", "limits", "wandb", "accelerate",
                        "steps", "type", "repo_id", "gpu", "gpu_count", "spot", "time_limit", "store", "enable", "runs",
                        "framework", "command", "run", "pod", "options", "runtime", "cmds"])
TREES = st.recursive(SCALARS, lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=4)), max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.dictionaries(KEYS, TREES, max_size=5))
def test_fuzzed_configs_never_escape_as_tracebacks(tmp_path, tree):
    base = {"dataset": {"repo_id": "a/b"}, "policy": {"type": "act"}}
    path = write(tmp_path, yaml.safe_dump({**base, **tree}))
    try:
        load_job(path, environ={})
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


def test_every_key_is_documented_in_configs_readme():
    from pydantic import BaseModel

    from helpers.config import JobConfig

    readme = (REPO / "configs/README.md").read_text()
    missing = []
    for section, field in JobConfig.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            missing += [f"{section}.{key}" for key in model.model_fields if f"{section}.{key}" not in readme and f"`{key}`" not in readme and f", {key}" not in readme]
        elif f"`{section}`" not in readme:
            missing.append(section)
    assert not missing, f"undocumented keys: {missing}"
