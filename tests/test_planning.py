"""Planning: the Hub check, the memory estimate from the config, the cheapest offer that really fits, and
`invoke plan` through the real CLI. The Hub is the local Hub server (real huggingface_hub client)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from fixtures_hub import HUB_TOKEN, HUB_USER
from helpers import vram
from helpers.config import load_job, validate
from helpers.errors import ConfigError
from helpers.gpus import BY_KEY
from helpers.offers import Offer
from helpers.backends.base import descriptor
from helpers.backend_choice import plan_for
from helpers.planning import Plan, check_hub, hub_repos, plan_gpu, size_job

REPO = Path(__file__).resolve().parents[1]
INVOKE = REPO / ".venv/bin/invoke"
BASE = {"dataset": {"repo_id": "a/b"}, "policy": {"type": "act"}}


def job_of(**sections):
    return validate({**BASE, **sections})


def offer(key, price, count=1, provider="runpod", **kw):
    return Offer(provider, BY_KEY[key], count, price, **kw)


def cli(*args, cwd: Path, env: dict | None = None, timeout: float = 60):
    """`invoke plan ...` as a user runs it: own cwd and HOME, so no .env or cache of this machine leaks in."""
    full_env = {**os.environ, "HOME": str(cwd), "RUNPOD_API_KEY": "", "VERDA_CLIENT_ID": "", **(env or {})}
    return subprocess.run([str(INVOKE), "-r", str(REPO), "plan", *args], cwd=cwd, capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def write(tmp_path: Path, data: dict, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


# ------------------------------------------------------------------------------------ offer choice


TABLE = [
    offer("RTX-4090", 0.34, cloud="community"), offer("RTX-4090", 0.69, cloud="secure"),
    offer("RTX-4090", 0.20, spot=True, cloud="community"),
    offer("L40S", 0.79, cloud="community"), offer("L40S", 0.86, cloud="secure"),
    offer("A100-SXM-80GB", 1.39, cloud="community"), offer("H100-SXM", 2.69, cloud="community"),
    offer("H100-SXM", 3.99, cloud="secure"), offer("H200-SXM", 3.05, spot=True, cloud="community"),
]


def test_cheapest_offer_that_really_fits_and_why_the_others_lost():
    small = plan_gpu(job_of(), descriptor("runpod"), TABLE, offline=True)  # ACT: ~7 GB
    assert small.gpu["id"] == "RTX-4090" and small.price_per_hour == 0.34 and not small.spot
    spot_row = next(c for c in small.candidates if c["spot"] and c["gpu_id"] == "RTX-4090")
    assert not spot_row["fits"] and "spot" in spot_row["reason"]

    # pi05 full at LeRobot's batch 8 in bf16: ~38 GB (16-bit parameters and AdamW states), a 48 GB card, not an 80
    mid = plan_gpu(job_of(policy={"type": "pi05"}), descriptor("runpod"), TABLE, offline=True)
    assert 24 <= mid.vram_estimate_gb <= 40 and mid.gpu["id"] == "L40S" and mid.price_per_hour == 0.79

    big = plan_gpu(job_of(policy={"type": "pi05"}, training={"batch_size": 48}), descriptor("runpod"), TABLE, offline=True)
    est = big.vram_estimate_gb
    assert 50 < est < 80 and big.gpu["memory_gb"] >= est
    assert big.gpu["id"] == "A100-SXM-80GB" and big.price_per_hour == 1.39
    assert big.estimate["params_source"] == "preset pi05" and big.estimate["gradient_checkpointing"] is True
    assert set(big.estimate["parts"]) >= {"weights", "gradients", "optimizer", "activations", "cuda_overhead"}
    rejected = {c["gpu_id"]: c["reason"] for c in big.candidates if not c["fits"] and not c["spot"]}
    assert f"< {int(est) + 1} GB needed" in rejected["RTX-4090"] and "GB needed" in rejected["L40S"]
    assert "cheapest of 3 offers that fit" in big.why  # A100, H100 community and secure
    assert isinstance(big.offer, Offer) and big.offer.gpu.key == "A100-SXM-80GB"


def test_spot_competes_when_allowed_and_stock_is_respected():
    job = job_of(policy={"type": "pi05"}, training={"batch_size": 48}, resources={"spot": True},
                 checkpoint={"store": "hf://org/pi05-ckpt"})
    assert plan_gpu(job, descriptor("runpod"), TABLE, offline=True).gpu["id"] == "A100-SXM-80GB"  # 1.39 < H200 spot 3.05
    cheap_spot = TABLE + [offer("H100-SXM", 1.10, spot=True, cloud="community")]
    p = plan_gpu(job, descriptor("runpod"), cheap_spot, offline=True)
    assert p.gpu["id"] == "H100-SXM" and p.spot is True and p.price_per_hour == 1.10
    gone = TABLE + [offer("H100-SXM", 1.10, spot=True, cloud="community", in_stock=False, stock="None")]
    p = plan_gpu(job, descriptor("runpod"), gone, offline=True)
    assert p.gpu["id"] == "A100-SXM-80GB"
    assert any("out of stock" in c["reason"] for c in p.candidates if c["price_per_hour"] == 1.10)


def test_constraints_gpu_list_cloud_price_min_vram_location():
    pi05 = {"type": "pi05"}
    p = plan_gpu(job_of(policy=pi05, resources={"gpu": ["H100", "H200"]}), descriptor("runpod"), TABLE, offline=True)
    assert p.gpu["id"] == "H100-SXM" and p.price_per_hour == 2.69
    p = plan_gpu(job_of(policy=pi05, resources={"gpu": "H100 SXM", "cloud": "secure"}), descriptor("runpod"), TABLE, offline=True)
    assert p.price_per_hour == 3.99 and p.cloud == "secure"
    p = plan_gpu(job_of(resources={"min_vram_gb": 40}), descriptor("runpod"), TABLE, offline=True)  # ACT, but >= 40 GB asked
    assert p.gpu["id"] == "L40S" and p.price_per_hour == 0.79
    with pytest.raises(ConfigError) as caught:
        plan_gpu(job_of(policy=pi05, resources={"max_price_per_hour": 0.5}), descriptor("runpod"), TABLE, offline=True)
    assert "no offer fits" in str(caught.value) and "\n" not in str(caught.value)
    places = [offer("H100-SXM", 2.0, provider="verda", location="FIN-01"),
              offer("H100-SXM", 1.5, provider="verda", location="ICE-01")]
    p = plan_gpu(job_of(policy=pi05, resources={"location": "FIN-01"}), descriptor("verda"), places, offline=True)
    assert p.location == "FIN-01" and p.price_per_hour == 2.0
    p = plan_gpu(job_of(policy=pi05, verda={"location": "FIN-01"}), descriptor("verda"), places, offline=True)
    assert p.location == "FIN-01"


def test_gpu_count_and_multi_gpu_estimate():
    p = plan_gpu(job_of(policy={"type": "pi05"}, resources={"gpu_count": 2}), descriptor("runpod"), None, offline=True)
    assert p.gpu_count == 2 and p.estimate["gpu_count"] == 2
    cheapest = min(c["price_per_hour"] for c in p.candidates if c["fits"])
    assert p.price_per_hour == cheapest and all(c["gpu_count"] == 2 for c in p.candidates)
    with pytest.raises(ConfigError, match="gpu_count 4"):
        plan_gpu(job_of(resources={"gpu_count": 3}), descriptor("runpod"), None, offline=True)  # RunPod: 1, 2, 4, 6, 8


def test_free_clusters_take_the_smallest_gpu_that_fits():
    p = plan_gpu(job_of(), descriptor("chtc"), None, offline=True)  # ACT ~7 GB: no need to hold an H200
    fits = [c for c in p.candidates if c["fits"]]
    assert p.price_per_hour == 0 and p.gpu["memory_gb"] == min(c["memory_gb"] for c in fits)
    assert p.gpu["memory_gb"] >= p.vram_estimate_gb and "smallest" in p.why


# -------------------------------------------------------------------------------- estimate inputs


def test_method_defaults_follow_the_framework():
    lora = validate({"framework": "openpi", "openpi": {"config_name": "pi0_libero_low_mem_finetune"}})
    full = validate({"framework": "openpi", "openpi": {"config_name": "pi0_libero"}})
    assert size_job(lora).estimate.inputs["method"] == "lora"
    assert size_job(full).estimate.inputs["method"] == "full"
    assert size_job(lora).estimate.total_gb < 40 < size_job(full).estimate.total_gb
    forced = validate({"framework": "openpi", "openpi": {"config_name": "pi0_libero"}, "model": {"method": "lora"}})
    assert size_job(forced).estimate.inputs["method"] == "lora"

    r1 = {"framework": "open_r1", "open_r1": {"model": "org/llm"}, "model": {"params": 1.5e9}}
    grpo = size_job(validate(r1)).estimate
    assert grpo.inputs["method"] == "grpo" and grpo.inputs["generation_engine"] == "vllm_colocate"
    assert grpo.inputs["seq_len"] == 512 + 1024 and grpo.inputs["logit_tokens"] == 1024
    assert grpo.inputs["gradient_checkpointing"] is True and grpo.generation_gb > 0
    no_vllm = size_job(validate({**r1, "open_r1": {"model": "org/llm", "use_vllm": False}})).estimate
    assert no_vllm.inputs["generation_engine"] == "none" and no_vllm.total_gb < grpo.total_gb
    server = validate({**r1, "open_r1": {"model": "org/llm", "vllm_mode": "server"}, "resources": {"gpu_count": 2}})
    e = size_job(server).estimate
    assert e.inputs["generation_engine"] == "vllm_server" and e.inputs["sharding"] == "zero2" and e.server_gb > 0


def test_parameter_count_sources_and_the_missing_case():
    assert size_job(job_of(model={"params": 1e9})).params_source == "model.params"
    assert size_job(job_of()).params_source == "preset act"
    with pytest.raises(ConfigError) as caught:
        size_job(validate({"framework": "open_r1", "open_r1": {"model": "org/llm"}}), offline=True)
    assert caught.value.key == "model.params" and "--offline" in str(caught.value)
    command = {"framework": "command", "command": {"run": "python x.py"}}
    with pytest.raises(ConfigError, match="model.params"):
        plan_gpu(validate(command), descriptor("runpod"), TABLE, offline=True)
    named = plan_gpu(validate({**command, "resources": {"gpu": "L40S"}}), descriptor("runpod"), TABLE, offline=True)
    assert named.gpu["id"] == "L40S" and named.vram_estimate_gb is None


def test_seed000_runs_are_sized_by_their_largest_policy():
    job = validate({**BASE, "runs": [{"policy_type": "act"}, {"policy_type": "pi05"}]})
    assert size_job(job).estimate.total_gb == pytest.approx(size_job(job_of(policy={"type": "pi05"})).estimate.total_gb)


def test_hub_repos_of_each_framework():
    assert hub_repos(job_of(policy={"type": "pi05"})) == [
        ("policy.pretrained_path", "lerobot/pi05_base", "model"), ("dataset.repo_id", "a/b", "dataset")]
    local_data = validate({"dataset": {"repo_id": "x/y", "root": "/data/y"}, "policy": {"type": "act"}})
    assert hub_repos(local_data) == []
    r1 = validate({"framework": "open_r1", "open_r1": {"model": "o/m", "dataset_name": "o/d"}})
    assert hub_repos(r1) == [("open_r1.model", "o/m", "model"), ("open_r1.dataset_name", "o/d", "dataset")]


# ------------------------------------------------------------------------- GPUs a backend lacks


@pytest.mark.parametrize("gpu, provider", [("B300", "chtc"), ("MI300X", "verda"), (["RTX 4090", "A30"], "verda")])
def test_gpu_the_backend_does_not_offer_is_refused_before_any_call(gpu, provider):
    job = job_of(resources={"gpu": gpu})
    with pytest.raises(ConfigError) as caught:
        plan_gpu(job, descriptor(provider), offers=[], offline=True)  # refused before the (empty) offers are looked at
    line = str(caught.value)
    assert caught.value.key == "resources.gpu" and f"not offered on {provider}" in line and "\n" not in line
    assert f"{provider} offers: " in line and ("H100 SXM" in line)


def test_gpu_in_the_catalog_but_without_a_price_names_what_is_priced():
    job = job_of(resources={"gpu": "RTX 5090"})  # RunPod rents it; the dated table has no price for it
    with pytest.raises(ConfigError) as caught:
        plan_gpu(job, descriptor("runpod"), None, offline=True)
    assert "no runpod offer for RTX 5090 in the dated price table" in str(caught.value)
    assert "RTX 4090" in caught.value.fix


def test_one_missing_gpu_of_a_list_is_a_warning():
    p = plan_gpu(job_of(resources={"gpu": ["RTX 4090", "L40S"]}), descriptor("verda"), None, offline=True)
    assert p.gpu["id"] == "L40S" and any("RTX 4090 is not offered on verda" in w for w in p.warnings)


# ------------------------------------------------------------------------------------- the Hub


def _tiny_llm(hub, repo="org/tiny-llm", rows=1000, cols=1000):
    hub.seed_safetensors_model(repo, {"model.embed.weight": ("BF16", [rows, cols])})
    hub.commit_files(repo, {"config.json": json.dumps(
        {"hidden_size": 256, "num_hidden_layers": 4, "vocab_size": 1000}).encode()})
    return rows * cols


def _r1(repo="org/tiny-llm", dataset="org/math", params=7e9, **extra):
    return {"framework": "open_r1", "job": {"name": "r1"}, "open_r1": {"model": repo, "dataset_name": dataset},
            "model": {"params": params}, "limits": {"time_limit": "2h"}, **extra}


def test_param_count_from_safetensors_metadata_changes_the_estimate(hub_server):
    count = _tiny_llm(hub_server)
    hub_server.create_repo("org/math", repo_type="dataset")
    job = validate(_r1())
    offline = plan_gpu(job, descriptor("runpod"), None, offline=True)
    online = plan_gpu(job, descriptor("runpod"), None, token=HUB_TOKEN)
    assert offline.estimate["params"] == 7e9 and offline.hub["status"] == "offline"
    assert online.estimate["params"] == count and "Hub safetensors metadata of org/tiny-llm" in online.estimate["params_source"]
    assert online.vram_estimate_gb < offline.vram_estimate_gb / 5
    assert not any("coarse" in n for n in online.estimate["notes"])  # shape from config.json
    assert online.hub == {"status": "checked", "checked": ["model org/tiny-llm", "dataset org/math"]}
    assert online.price_per_hour <= offline.price_per_hour


def test_gated_model_without_access_is_one_line_naming_repo_and_fix(hub_server, tmp_path):
    _tiny_llm(hub_server, "gate-org/llm")
    hub_server.create_repo("org/math", repo_type="dataset")
    hub_server.set_gated("gate-org/llm")
    with pytest.raises(ConfigError) as caught:
        plan_gpu(validate(_r1("gate-org/llm")), descriptor("runpod"), None, token=HUB_TOKEN)
    line = str(caught.value)
    assert caught.value.key == "open_r1.model" and "'gate-org/llm' is gated" in line and "\n" not in line
    assert f"accept the license at {hub_server.url}/gate-org/llm with the account of HF_TOKEN" in line

    path = write(tmp_path, _r1("gate-org/llm"))  # the same through the CLI: exit 2, one line, no traceback
    result = cli("--config", str(path), "--backend", "runpod", "--json", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.strip().count("\n") == 0 and "accept the license" in result.stderr and "Traceback" not in result.stderr

    hub_server.set_gated("gate-org/llm", allowed_users=[HUB_USER])  # licence accepted: the plan goes on
    assert plan_gpu(validate(_r1("gate-org/llm")), descriptor("runpod"), None, token=HUB_TOKEN).hub["status"] == "checked"


def test_gated_dataset_and_missing_repos(hub_server):
    _tiny_llm(hub_server)
    hub_server.create_repo("gate-org/data", repo_type="dataset")
    hub_server.set_gated("gate-org/data", repo_type="dataset")
    with pytest.raises(ConfigError) as caught:
        check_hub(validate(_r1(dataset="gate-org/data")), HUB_TOKEN)
    assert caught.value.key == "open_r1.dataset_name" and f"{hub_server.url}/datasets/gate-org/data" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        check_hub(validate(_r1("org/no-such-model")), HUB_TOKEN)
    assert "no Hub model 'org/no-such-model'" in str(caught.value) and "check the repo id" in str(caught.value)
    missing_data = {"dataset": {"repo_id": "org/no-such-data"}, "policy": {"type": "act"}}
    with pytest.raises(ConfigError) as caught:
        check_hub(validate(missing_data), HUB_TOKEN)
    assert caught.value.key == "dataset.repo_id" and "check the repo id" in str(caught.value)


def test_unreachable_hub_is_a_warning_not_an_error(tmp_path):
    path = write(tmp_path, _r1())
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    result = cli("--config", str(path), "--backend", "runpod", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["hub"]["status"] == "unreachable" and doc["estimate"]["params_source"] == "model.params"
    assert any("could not reach the Hub" in w for w in doc["warnings"]) and "could not reach the Hub" in result.stderr


def test_offline_makes_no_network_call(hub_server, tmp_path):
    _tiny_llm(hub_server)
    hub_server.create_repo("org/math", repo_type="dataset")
    job = validate(_r1())
    hub_server.request_log.clear()
    assert plan_gpu(job, descriptor("verda"), None, offline=True).hub["status"] == "offline"
    assert hub_server.request_log == []
    assert plan_gpu(job, descriptor("verda"), None, offline=False, token=HUB_TOKEN).hub["status"] == "checked"
    assert hub_server.request_log  # the same plan online does ask the Hub

    path = write(tmp_path, _r1())
    hub_server.request_log.clear()
    for backend in ("runpod", "verda", "local"):  # through the CLI, whichever backend modules exist by now
        started = time.monotonic()
        result = cli("--config", str(path), "--backend", backend, "--json", "--offline", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["backend"] == backend
        assert time.monotonic() - started < 5
    assert hub_server.request_log == []  # the Hub in this test's environment heard nothing
    closed = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    started = time.monotonic()
    result = cli("--config", str(path), "--backend", "runpod", "--json", "--offline", cwd=tmp_path, env=closed)
    assert result.returncode == 0 and "could not reach" not in result.stderr and time.monotonic() - started < 5


# ------------------------------------------------------------------------- `invoke plan --json`


CONFIGS = ["pi05.yaml", "open_r1_grpo.yaml", "openpi_pi05_lora.yaml", "act.yaml"]
BACKENDS = ["runpod", "verda", "chtc", "local"]
KEYS = {"backend", "gpu", "gpu_count", "vram_estimate_gb", "estimate", "price_per_hour", "spot", "estimated_cost_usd",
        "candidates", "command", "secrets_required", "why", "warnings"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS)
def test_invoke_plan_json(config, backend, tmp_path):
    result = cli("--config", str(REPO / "configs" / config), "--backend", backend, "--json", "--offline", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # exactly one JSON object on stdout
    job = load_job(REPO / "configs" / config, {"backend": backend}, environ={})
    assert KEYS <= set(doc) and doc["backend"] == backend and doc["run_id"] == job.run_id
    est = doc["vram_estimate_gb"]
    assert est > 1 and {"id", "name", "memory_gb"} <= set(doc["gpu"] or {"id", "name", "memory_gb"})
    assert doc["command"] and isinstance(doc["secrets_required"], list)
    if job.store.startswith("hf://"):
        assert "HF_TOKEN" in doc["secrets_required"]
    hours = job.time_limit_seconds / 3600
    if "hub" in doc and isinstance(doc["estimate"], dict):  # sized by helpers.planning
        assert est == pytest.approx(size_job(job, offline=True).estimate.total_gb, abs=0.05)
        assert {"weights", "gradients", "optimizer", "activations"} <= set(doc["estimate"]["parts"])
    if doc["candidates"]:  # an offer was chosen: the cheapest candidate that fits the estimate
        fits = [c for c in doc["candidates"] if c["fits"]]
        assert fits and doc["gpu"]["memory_gb"] >= est and doc["gpu_count"] == job.resources.gpu_count
        assert doc["price_per_hour"] == min(c["price_per_hour"] for c in fits)
        assert doc["estimated_cost_usd"] == pytest.approx(round(doc["price_per_hour"] * hours, 2))
        for c in doc["candidates"]:
            if "memory_gb" in c:  # rows from plan_gpu say which one was taken and how big each GPU is
                assert not c["fits"] or c["memory_gb"] >= est
                assert not c.get("chosen") or (c["fits"] and c["gpu_id"] == doc["gpu"]["id"])
    if backend in ("runpod", "verda"):
        assert doc["candidates"] and doc["price_per_hour"] > 0
        assert ({"runpod": "RUNPOD_API_KEY", "verda": "VERDA_CLIENT_ID"}[backend]) in doc["secrets_required"]
    if backend in ("chtc", "local"):
        assert doc["price_per_hour"] == 0 and not doc["estimated_cost_usd"]
    if backend == "local":
        assert doc["gpu"] is None or doc["gpu"]["name"]


def test_invoke_plan_table_shows_candidates_estimate_cost_command_and_secrets(tmp_path):
    result = cli("--config", str(REPO / "configs/pi05.yaml"), "--backend", "runpod", "--offline", cwd=tmp_path,
                 env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "runpod offers for 2 GPUs" in out and "cheapest that fits" in out and "→" in out
    assert "memory: ~" in out and "weights" in out and "optimizer" in out and "activations" in out
    assert "up to $" in out and "24 h time limit" in out and "budget $150" in out
    assert "command: '$TRAINER_ENV/bin/accelerate' launch --multi_gpu --num_processes=2" in out
    assert "secrets: HF_TOKEN (missing), RUNPOD_API_KEY (missing)" in out


def test_job_that_fits_nothing_exits_2_with_the_smallest_change(tmp_path):
    path = write(tmp_path, _r1(params=14e9, resources={"gpu": ["L40S", "A100 SXM", "H100 SXM"]}))
    result = cli("--config", str(path), "--backend", "runpod", "--json", "--offline", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.count("\n") == 0 and str(path) in line and "no offer fits" in line
    assert "set resources.gpu_count" in line or "set open_r1.recipe_options.use_peft: true" in line  # keys to set


def test_unknown_gpu_in_yaml_exits_2_with_did_you_mean(tmp_path):
    path = write(tmp_path, {**BASE, "resources": {"gpu": ["L40S", "H100 SMX"]}})
    result = cli("--config", str(path), "--json", "--offline", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "resources.gpu: unknown GPU 'H100 SMX'" in result.stderr and "did you mean 'H100 SXM'" in result.stderr


def test_backend_lacking_the_gpu_exits_2_listing_what_it_offers(tmp_path):
    path = write(tmp_path, {**BASE, "resources": {"gpu": "MI300X"}})
    result = cli("--config", str(path), "--backend", "runpod", "--offline", cwd=tmp_path)
    assert result.returncode == 2  # RunPod rents MI300X, but the dated table has no price: it says which GPUs it has
    assert "no runpod offer for MI300X" in result.stderr and "H100 SXM" in result.stderr
    for backend in ("verda", "chtc"):  # whichever module plans it, the answer is one line before any API call
        result = cli("--config", str(path), "--backend", backend, "--offline", cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
        assert f"resources.gpu: MI300X is not offered on {backend} — {backend} offers: " in result.stderr


def test_backend_plan_is_called_with_offline(monkeypatch):
    """`invoke plan --offline` reaches the backend's plan as LaunchOptions(offline=True) (the Backend contract)."""
    import types

    from helpers.backends.base import LaunchOptions

    calls = []

    def plan(job, options=LaunchOptions()):
        calls.append(options.offline)
        return Plan("runpod", gpu_count=1, vram_estimate_gb=1.0, estimate={}, hub={}, commands=["x"])

    monkeypatch.setattr("helpers.backend_choice.backend_of", lambda name: types.SimpleNamespace(plan=plan))
    assert plan_for(job_of(), "runpod", offline=True).commands == ["x"] and calls == [True]
    assert plan_for(job_of(), "runpod", offline=False).commands == ["x"] and calls == [True, False]


def test_unknown_gpu_keeps_the_users_spelling_and_accepts_numbers():
    assert job_of(resources={"gpu": "nvidia h100 80gb hbm3"}).resources.gpu == "nvidia h100 80gb hbm3"
    assert job_of(resources={"gpu": 4090}).resources.gpu == "4090"
    with pytest.raises(ConfigError) as caught:
        job_of(resources={"gpu": ["H100", "RTX 4009"]})
    assert caught.value.key == "resources.gpu" and "did you mean" in str(caught.value)


def test_estimate_is_json_ready():
    job = job_of(policy={"type": "smolvla"})
    p = plan_gpu(job, descriptor("verda"), None, offline=True)
    assert json.loads(json.dumps(p.to_json(job)))["estimate"] == p.estimate
    assert p.estimate["preset"] == "smolvla" and p.estimate["params"] == vram.PRESET_PARAMS["smolvla"]


# --- advice that converges -------------------------------------------------------------------------------------

def apply_advice(data: dict, advice: str) -> dict:
    """What a user does with 'set a.b: v and c: w (...)': set exactly those keys."""
    import copy

    out = copy.deepcopy(data)
    for key, value in re.findall(r"([a-z_0-9]+(?:\.[a-z_0-9]+)+): ([A-Za-z0-9_.]+)", advice.split(" (")[0]):
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return out


REFUSED = {
    "Qwen2.5-7B full on H100": {"job": {"name": "q7"}, "framework": "command", "command": {"run": "python train.py"},
                                "model": {"repo_id": "Qwen/Qwen2.5-7B"}, "training": {"batch_size": 4},
                                "resources": {"gpu": "H100"}},
    "Qwen2.5-7B full on 4x H100, unsharded": {"job": {"name": "q7"}, "framework": "command",
                                              "command": {"run": "python train.py"}, "model": {"repo_id": "Qwen/Qwen2.5-7B"},
                                              "resources": {"gpu": "H100", "gpu_count": 4}},
    "Open R1 GRPO Qwen2.5-7B on one L40S": {"job": {"name": "r1"}, "framework": "open_r1",
                                            "open_r1": {"model": "Qwen/Qwen2.5-7B-Instruct", "dataset_name": "a/b"},
                                            "resources": {"gpu": "L40S"}},
    "LeRobot pi05 batch 64 on RTX 4090s": {"job": {"name": "p"}, "framework": "lerobot", "dataset": {"repo_id": "a/b"},
                                           "policy": {"type": "pi05"}, "training": {"batch_size": 64},
                                           "resources": {"gpu": "RTX 4090"}},
}


@pytest.mark.parametrize("name", REFUSED)
def test_applying_a_refused_plans_advice_gives_a_plan(name):
    data = REFUSED[name]
    with pytest.raises(ConfigError) as caught:
        plan_gpu(validate(data), descriptor("runpod"), offline=True)
    proposals = [p for p in caught.value.fix.split(", or ") if p.startswith("set ")]
    assert proposals, caught.value.fix
    for proposal in proposals:
        if proposal.startswith("set ") and " to resources.gpu" not in proposal:
            fixed = apply_advice(data, proposal)
            planned = plan_gpu(validate(fixed), descriptor("runpod"), offline=True)  # no ConfigError: the advice converged
            assert planned.gpu["memory_gb"] >= planned.vram_estimate_gb, (proposal, planned.why)


def test_sharding_advice_only_where_the_trainer_receives_it():
    old = {"job": {"name": "p"}, "framework": "lerobot", "dataset": {"repo_id": "a/b"}, "policy": {"type": "pi05"},
           "lerobot": {"version": "0.4.4"}, "training": {"batch_size": 64}, "resources": {"gpu": "RTX 4090", "gpu_count": 2}}
    with pytest.raises(ConfigError) as caught:
        plan_gpu(validate(old), descriptor("runpod"), offline=True)
    assert "model.sharding" not in caught.value.fix  # 0.4.4 is launched without DeepSpeed/FSDP
    assert "model.method: lora" not in caught.value.fix  # LeRobot's command line does not take it


def test_one_very_large_card_is_shown_beside_the_cheapest_plans_that_fit_differently():
    data = {**REFUSED["Qwen2.5-7B full on H100"], "resources": {}}
    planned = plan_gpu(validate(data), descriptor("runpod"), offline=True)
    assert planned.gpu["memory_gb"] > 100  # B200
    kinds = {tuple(a["set"]) for a in planned.alternatives}
    assert ("model.method: lora",) in kinds and any("model.sharding: zero3" in k for k in kinds for k in k)
    for alt in planned.alternatives:
        assert alt["price_per_hour"] > 0 and alt["vram_estimate_gb"] <= 100
        fixed = apply_advice(data, "set " + " and ".join(alt["set"]))
        again = plan_gpu(validate(fixed), descriptor("runpod"), offline=True)
        assert again.price_per_hour == pytest.approx(alt["price_per_hour"]) and again.gpu["name"] == alt["gpu"]


def test_plan_output_lists_fitting_offers_and_one_line_for_the_rest(tmp_path):
    config = tmp_path / "q7.yaml"
    config.write_text(yaml.safe_dump({**REFUSED["Qwen2.5-7B full on H100"], "resources": {}}))
    done = cli("--config", str(config), "--offline", "--backend", "runpod", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"\d+ more: \d+ too small", done.stdout), done.stdout
    summary = next(line for line in done.stdout.splitlines() if line.startswith("plan for q7"))
    assert summary.count("B200 180GB") == 1, summary  # the GPU named once
    assert "  or: " in done.stdout and "set model.method: lora" in done.stdout


# --- one table across providers --------------------------------------------------------------------------------

def test_plan_backend_cloud_ranks_every_cloud_in_one_table(tmp_path):
    """No keys here: every cloud backend is ranked (and said); the winner is the cheapest fitting offer of all."""
    config = REPO / "configs" / "pi05.yaml"
    shown = cli("--config", str(config), "--offline", "--backend", "cloud", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "offers that fit, over runpod, verda" in shown.stdout and "chosen: " in shown.stdout
    assert "no credentials for any cloud" in shown.stdout + shown.stderr
    doc = json.loads(cli("--config", str(config), "--offline", "--backend", "cloud", "--json", cwd=tmp_path).stdout)
    offers = doc["cloud_offers"]
    assert {o["backend"] for o in offers} == {"runpod", "verda"} and all(o["fits"] for o in offers)
    prices = [o["price_per_hour"] for o in offers]
    assert prices == sorted(prices) and doc["price_per_hour"] == prices[0]
    winner = next(o for o in offers if o["chosen"])
    assert winner["backend"] == doc["backend"] and doc["clouds"] == ["runpod", "verda"]
    assert all(o["cost_for_limit"] == pytest.approx(o["price_per_hour"] * 24, abs=0.01) for o in offers)  # 24 h limit
    # each cloud's own plan agrees with its rows: the winner is its cheapest
    alone = json.loads(cli("--config", str(config), "--offline", "--backend", doc["backend"], "--json", cwd=tmp_path).stdout)
    assert alone["price_per_hour"] == doc["price_per_hour"] and alone["gpu"] == doc["gpu"]


def test_plan_backend_cloud_uses_only_the_clouds_with_credentials(tmp_path):
    config = REPO / "configs" / "pi05.yaml"
    doc = json.loads(cli("--config", str(config), "--offline", "--backend", "cloud", "--json", cwd=tmp_path,
                         env={"RUNPOD_API_KEY": "rp_only_runpod"}).stdout)
    assert doc["clouds"] == ["runpod"] and {o["backend"] for o in doc["cloud_offers"]} == {"runpod"}


def test_train_dry_run_names_the_winning_cloud_and_launches_through_its_own_verb(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "RUNPOD_API_KEY": "rp_fake", "VERDA_CLIENT_ID": "id",
           "VERDA_CLIENT_SECRET": "secret", "HF_TOKEN": "hf_" + "x" * 30, "HF_ENDPOINT": "http://127.0.0.1:9",
           "VERDA_BASE_URL": "http://127.0.0.1:9", "RUNPOD_REST_URL": "http://127.0.0.1:9"}
    done = subprocess.run([str(INVOKE), "-r", str(REPO), "train", "--config", str(REPO / "configs" / "pi05.yaml"),
                           "--backend", "cloud", "--dry-run", "--offline"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    chosen = re.search(r"chosen: (\w+): the cheapest of \d+ fitting offers on runpod, verda", done.stdout)
    assert chosen, done.stdout
    assert f"launching on {chosen[1]} (invoke {chosen[1]}.train)" in done.stdout
    assert f"plan for pi05-kitchen on {chosen[1]}" in done.stdout  # that backend's own plan, as its train prints it
    assert not (tmp_path / "runs").exists()  # a dry run creates nothing
    refused = subprocess.run([str(INVOKE), "-r", str(REPO), "train", "--config", str(REPO / "configs" / "pi05.yaml"),
                              "--backend", "slurm"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "use invoke slurm.train" in refused.stderr
