"""The CHTC backend on a real HTCondor pool: Debian 13's HTCondor 23.9 in the Debian root (tests/htcondor_pool.py),
started and stopped here, submitted to with the real condor_submit as a non-root user.

- Matching: what Trainyard renders (gpus_minimum_capability, gpus_minimum_memory, the device-name regexp,
  +WantGPULab, +GPUJobLength) starts on a machine advertising H100s the way CHTC's do, and stays idle on one that
  has only L40S cards, for both presets (LoRA 24 GB / short, full fine-tune 80 GB / long).
- End to end in the vanilla universe (`chtc.universe: vanilla`; there is no Docker engine here): the command
  framework with the suite's toy trainer; `condor_vacate_job` evicts it mid-run, HTCondor transfers its checkpoints
  back (ON_EXIT_OR_EVICT) and starts it again with them in the new sandbox, the wrapper resumes from the newest
  complete step, and the finished checkpoints land under /staging/<netid>.
- openpi's command line (`uv run scripts/train.py ...`, stubbed by tests/fake_openpi_uv.py in a fake image on the
  execute machine) evicted and resumed with `--resume`, finished under /staging/<netid>/openpi/checkpoints/<config>/
  <exp>/, then `invoke chtc.pull` brings it home over rsync+SSH from a transfer host that sees that /staging.
- Secrets: what another user of the access point can read of a job that got WANDB_API_KEY / HF_TOKEN by getenv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.backends import chtc_condor
from helpers.config import validate
from tests.htcondor_pool import H100, H200, L40S, USER, HTCondorPool

REPO = Path(__file__).resolve().parents[1]
WORK = f"/home/{USER}/work"  # the submit folder on the access point
OPENPI_IMAGE = "/opt/openpi-image"
CANARY = {"WANDB_API_KEY": "wandbCANARY" + "7" * 20, "HF_TOKEN": "hf_CANARY" + "3" * 26}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def render(pool: HTCondorPool, data: dict, secrets: dict | None = None) -> str:
    """Render the run folder on the access point (runs/chtc/... under WORK, relative paths as a user has them);
    returns the submit file's path relative to WORK."""
    work = pool.path(WORK)
    work.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(work)
    try:
        submit_file, _text, _s = chtc_condor.render(validate(data), secrets)
    finally:
        os.chdir(here)
    pool.run(["chown", "-R", USER, WORK])
    return submit_file.as_posix()


def submit(pool: HTCondorPool, submit_file: str, env: dict | None = None) -> str:
    done = pool.run(["condor_submit", submit_file], user=USER, cwd=WORK, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"submitted to cluster (\d+)", done.stdout)[1]


def preset(name: str, method: str) -> dict:
    return {"job": {"name": name}, "framework": "command", "command": {"run": "sleep 600"},
            "model": {"method": method}, "chtc": {"universe": "vanilla", "request_cpus": 1, "request_memory": "1GB",
                                                  "request_disk": "1GB"}}


@pytest.fixture(scope="module")
def condor_root(debian_root):
    toy = debian_root.path / "opt/trainyard-pool/toy_trainer.py"
    toy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "tests" / "toy_trainer.py", toy)
    image = debian_root.path / OPENPI_IMAGE.lstrip("/")  # what the openpi image has: its checkout and `uv`
    (image / "openpi/scripts").mkdir(parents=True, exist_ok=True)
    (image / "openpi/scripts/train.py").write_text("# openpi's trainer (not run here: bin/uv stands in)\n")
    (image / "bin").mkdir(exist_ok=True)
    (image / "bin/uv").write_text("#!/usr/bin/python3\n" + (REPO / "tests/fake_openpi_uv.py").read_text().split("\n", 1)[1])
    (image / "bin/uv").chmod(0o755)
    return debian_root


@pytest.mark.parametrize("gpu,starts", [(H100, True), (H200, True), (L40S, False)])
def test_rendered_requirements_match_h100_and_h200_machines_and_stay_idle_on_l40s(condor_root, gpu, starts):
    with HTCondorPool(condor_root, gpu) as pool:
        clusters = {m: submit(pool, render(pool, preset(f"match-{m}", m))) for m in ("lora", "full")}
        for method, cluster in clusters.items():
            length, = pool.job(cluster, "GPUJobLength")
            assert length == ("short" if method == "lora" else "long")
            if starts:
                pool.wait_for(cluster, lambda v: v and v[0] == "2", timeout=90)  # running
            else:
                pool.wait_for(cluster, lambda v: v and v[0] == "1", timeout=10)
        if not starts:
            # the control: the same job naming L40S starts here, so only the requirements keep the others idle
            control = submit(pool, render(pool, {**preset("match-l40s", "lora"), "resources": {"gpu": "L40S"}}))
            pool.wait_for(control, lambda v: v and v[0] == "2", timeout=90)
            for cluster in clusters.values():
                assert pool.job(cluster, "JobStatus", "NumJobStarts") == ["1", "0"]  # idle, never started
                why = pool.run(["condor_q", "-better-analyze", cluster], user=USER).stdout
                assert "No machines matched the jobs's constraints" in why, why
            clusters["control"] = control
        for cluster in clusters.values():
            pool.run(["condor_rm", cluster], user=USER)


def test_evicted_job_comes_back_with_its_checkpoints_resumes_and_finishes_in_staging(condor_root):
    """condor_vacate_job mid-run: the checkpoints are transferred back (ON_EXIT_OR_EVICT), the job runs again with
    them in its new sandbox, the wrapper resumes from the newest complete step, and it finishes; the checkpoints end
    under /staging/<netid>/... through transfer_output_remaps."""
    data = {"job": {"name": "evicted"}, "framework": "command",
            "command": {"run": "TOY_STEP_SECONDS=0.25 python3 /opt/trainyard-pool/toy_trainer.py"},
            "training": {"steps": 80, "save_freq": 10},
            "chtc": {"universe": "vanilla", "netid": USER, "request_cpus": 1, "request_memory": "1GB",
                     "request_disk": "1GB"}}
    with HTCondorPool(condor_root, H100) as pool:
        submit_file = render(pool, data, CANARY)  # what `invoke chtc.submit` does with the .env's secrets
        run_dir = Path(submit_file).parent
        pool.run(["mkdir", "-p", f"/staging/{USER}/openpi"], user=USER)  # the remap's target must exist
        cluster = submit(pool, submit_file, env=CANARY)  # (and the shell has them too: still not in the ClassAd)

        # secrets: what another user of the access point reads of this job
        seen_by_others = pool.run(["condor_q", "-allusers", "-l", cluster], user="nobody").stdout
        exposed = sorted(name for name, value in CANARY.items() if value in seen_by_others)
        pool.wait_for(cluster, lambda v: v and v[0] == "2", timeout=90)
        sandbox_ckpts = lambda: sorted(pool.path("/var/lib/condor/execute").glob("dir_*/outputs/train/evicted/checkpoints/0*"))  # noqa: E731
        deadline = time.monotonic() + 60
        while len(sandbox_ckpts()) < 2 and time.monotonic() < deadline:  # at least steps 10 and 20 are saved
            time.sleep(0.5)
        assert len(sandbox_ckpts()) >= 2
        done = pool.run(["condor_vacate_job", cluster], user=USER)
        assert done.returncode == 0, done.stdout + done.stderr
        back = pool.wait_for(cluster, lambda v: v and int(v[1]) >= 2, timeout=120)  # started again
        assert back[0] in ("1", "2")
        # where HTCondor put the checkpoints on eviction: the job's spool (brought into the next sandbox); the remap
        # destination got them too here (it exists: made above, as `invoke chtc.submit` does)
        spooled = sorted(pool.path("/var/spool/condor").glob("**/outputs/train/evicted/checkpoints/0*"))
        remapped = pool.path(f"/staging/{USER}/openpi/outputs")
        assert spooled, "no checkpoint in the job's spool after the eviction"
        print(f"\non eviction: {len(spooled)} checkpoint folder(s) in the spool, remap destination "
              f"{'has files' if remapped.exists() and any(remapped.rglob('*')) else 'empty'}")
        pool.wait_for(cluster, lambda v: v is None, timeout=180)  # finished, left the queue

        in_history = pool.run(["condor_history", "-l", cluster], user="nobody").stdout
        exposed_after = sorted(name for name, value in CANARY.items() if value in in_history)
        assert "trainyard_runtime.pyz" in seen_by_others and "TransferInput" in in_history  # we did read its ads
        # with `getenv` both were in the job's Environment, read by every user of the access point while queued and
        # after it ended (measured here, README.md); travelling in the 0600 .env they are in neither
        assert exposed == exposed_after == []
        assert "Hugging Face: using HF_TOKEN from the environment" in "".join(
            p.read_text() for p in sorted(pool.path(WORK).joinpath(run_dir).glob("*.out")))  # the job had them
        history = pool.run(["condor_history", cluster, "-af", "ExitCode", "NumJobStarts"], user=USER).stdout.split()
        assert history[:1] == ["0"] and int(history[1]) >= 2, history
        output = "".join(p.read_text() for p in sorted(pool.path(WORK).joinpath(run_dir).glob("*.out")))
        resumed = re.findall(r"resumed from step (\d+)", output)
        assert resumed, output[-3000:]
        final = pool.path(f"/staging/{USER}/openpi/outputs/train/evicted/checkpoints")
        steps = sorted(int(p.name) for p in final.iterdir() if p.name.isdigit())
        # HTCondor transfers no directory symlinks: LeRobot's `last` travels as last.step (chtc/train_wrapper.sh)
        assert steps and steps[-1] == 80 and (final / "last.step").read_text().strip() == "000080", steps
        assert json.loads((final / "000080/training_state/training_step.json").read_text())["step"] == 80
        started_again_at = int(resumed[-1])
        assert 20 <= started_again_at < 80  # the last transferred step, not zero
        print(f"\nHTCondor pool: evicted at >= step 20, resumed from step {started_again_at}, finished at 80; "
              f"canaries another user reads in condor_q -l: {exposed or 'none'}, in condor_history -l: {exposed_after or 'none'}")


def test_openpi_job_is_evicted_resumes_with_its_checkpoints_and_chtc_pull_brings_them_home(condor_root, tmp_path):
    """seed 003 as a lab runs it, on the pool: openpi's command line in the vanilla universe, evicted after two
    saves, started again with the transferred-back steps (`--resume`, never `--overwrite`), finished under
    /staging/<netid>/openpi/checkpoints/<config>/<exp>/; then `invoke chtc.pull --config` copies them home."""
    from emulators.sshhost import SshHost, generate_keypair

    config = {"job": {"name": "pi05-pool"}, "framework": "openpi",
              "openpi": {"config_name": "pi05_collab", "exp_name": "pool_run"},
              "training": {"steps": 60, "save_freq": 10, "batch_size": 2},
              "chtc": {"universe": "vanilla", "netid": USER, "request_cpus": 1, "request_memory": "1GB",
                       "request_disk": "1GB"}}
    environment = {"OPENPI_DIR": f"{OPENPI_IMAGE}/openpi", "FAKE_UV_PACE": "0.25",
                   "PATH": f"{OPENPI_IMAGE}/bin:/usr/local/bin:/usr/bin:/bin"}
    with HTCondorPool(condor_root, H100, job_environment=environment) as pool:
        submit_file = render(pool, config)
        pool.run(["mkdir", "-p", f"/staging/{USER}/openpi"], user=USER)
        cluster = submit(pool, submit_file)
        pool.wait_for(cluster, lambda v: v and v[0] == "2", timeout=90)
        in_sandbox = lambda: sorted(pool.path("/var/lib/condor/execute").glob(  # noqa: E731
            "dir_*/checkpoints/pi05_collab/pool_run/[0-9]*"))
        deadline = time.monotonic() + 60
        while len(in_sandbox()) < 2 and time.monotonic() < deadline:  # steps 10 and 20 saved
            time.sleep(0.5)
        assert len(in_sandbox()) >= 2
        done = pool.run(["condor_vacate_job", cluster], user=USER)
        assert done.returncode == 0, done.stdout + done.stderr
        pool.wait_for(cluster, lambda v: v is None, timeout=180)  # started again and finished
        history = pool.run(["condor_history", cluster, "-af", "ExitCode", "NumJobStarts"], user=USER).stdout.split()
        assert history[:1] == ["0"] and int(history[1]) >= 2, history
        output = "".join(p.read_text() for p in sorted(pool.path(WORK).joinpath(Path(submit_file).parent).glob("*.out")))
        assert "(transferred back): resuming from it" in output, output[-3000:]
        resumed = [int(n) for n in re.findall(r"resumed from step (\d+)", output)]
        assert resumed and 20 <= resumed[-1] < 59, output[-3000:]  # the newest transferred step, not zero
        assert "FileExistsError" not in output
        staged = pool.path(f"/staging/{USER}/openpi/checkpoints/pi05_collab/pool_run")
        steps = sorted(int(p.name) for p in staged.iterdir() if p.name.isdigit())
        assert steps[-1] == 59 and resumed[-1] in steps, steps

        # the transfer host sees the same /staging (here: the pool's, through an sshd on 127.0.0.1)
        key, public = generate_keypair(tmp_path / "keys")
        staging_root = os.path.realpath(pool.path("/staging"))
        binds = [staging_root] if staging_root.startswith("/root/") else []
        host = SshHost(tmp_path / "transfer", public, host_binds=binds)
        port = host.start()
        try:
            known_hosts = tmp_path / "known_hosts"
            known_hosts.write_text(f"[127.0.0.1]:{port} {host.host_public_key}\n")
            lab = tmp_path / "lab"
            lab.mkdir()
            (lab / "job.yaml").write_text(json.dumps(config))
            env = {**os.environ, "PYTHONPATH": str(REPO), "CHTC_TRANSFER_HOST": "127.0.0.1", "CHTC_SSH_PORT": str(port),
                   "CHTC_SSH_USER": "root", "CHTC_SSH_IDENTITY": str(key), "CHTC_SSH_BATCH": "yes",
                   "CHTC_STAGING_ROOT": staging_root,
                   "CHTC_SSH_OPTS": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"}
            pulled = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "chtc.pull", "--config", "job.yaml"],
                                    cwd=lab, env=env, capture_output=True, text=True, timeout=120)
        finally:
            host.stop()
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        home = lab / "checkpoints/pi05_collab/pool_run"
        assert sorted(int(p.name) for p in home.iterdir() if p.name.isdigit()) == steps
        assert (home / "59/params/weights.bin").read_bytes() == (staged / "59/params/weights.bin").read_bytes()
        assert "newest checkpoint: checkpoints/pi05_collab/pool_run/59" in pulled.stdout
        print(f"\nopenpi on the pool: evicted, resumed from step {resumed[-1]}, finished at 59; chtc.pull brought "
              f"{len(steps)} steps home")


def test_another_user_reads_getenv_secrets_in_the_classad_but_not_the_transferred_dotenv(condor_root):
    """The seed's way (`getenv = WANDB_API_KEY, HF_TOKEN`) against Trainyard's (a 0600 .env transferred with the
    job), with the same canaries in the submitting shell: what `condor_q -allusers -l` shows another user."""
    data = preset("secrets", "lora")
    with HTCondorPool(condor_root, L40S) as pool:  # nothing matches: the jobs stay queued, their ads readable
        ours = render(pool, data, CANARY)
        seeds = Path(ours).with_name("seed.sub")
        text = pool.path(WORK).joinpath(ours).read_text().replace("\nqueue", "\ngetenv = WANDB_API_KEY, HF_TOKEN\nqueue")
        pool.path(WORK).joinpath(seeds).write_text(text)
        exposed = {}
        for name, submit_file in (("dotenv", ours), ("getenv", seeds.as_posix())):
            cluster = submit(pool, submit_file, env=CANARY)
            ad = pool.run(["condor_q", "-allusers", "-l", cluster], user="nobody").stdout
            assert "TrainyardRun" in ad  # the other user does read the job's ad
            exposed[name] = sorted(k for k, v in CANARY.items() if v in ad)
            pool.run(["condor_rm", cluster], user=USER)
        assert exposed == {"dotenv": [], "getenv": ["HF_TOKEN", "WANDB_API_KEY"]}


def checkout_on_the_access_point(pool: HTCondorPool) -> str:
    """This repository's tracked files as the user's checkout on the access point (/home/<netid>/trainyard), keeping
    the .venv `make setup` built there before (mtimes kept: make rebuilds it only when the requirements change)."""
    import subprocess

    inside = f"/home/{USER}/trainyard"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    target = pool.path(inside)
    for name in filter(None, (f.decode() for f in files)):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    pool.run(["chown", "-R", USER, inside])
    return inside


def test_make_chtc_submit_on_the_access_point_then_status_logs_and_stop(condor_root):
    """As a user types it on the access point: `make chtc-submit CONFIG=... EXP=...` from the checkout (its own tool
    venv, made by `make setup`), then `invoke chtc.status`, `chtc.logs --job-id <job>`, and by the run id alone
    `invoke logs typed` and `invoke stop typed` (the job id recorded at submit) on the live pool."""
    with HTCondorPool(condor_root, H100) as pool:
        checkout = checkout_on_the_access_point(pool)
        config = pool.path(checkout) / "pool_job.yaml"
        config.write_text(json.dumps({
            "job": {"name": "typed"}, "framework": "command",
            "command": {"run": "TOY_STEP_SECONDS=0.5 python3 /opt/trainyard-pool/toy_trainer.py"},
            "training": {"steps": 400, "save_freq": 10},
            "chtc": {"universe": "vanilla", "request_cpus": 1, "request_memory": "1GB", "request_disk": "1GB"}}))
        pool.run(["chown", USER, f"{checkout}/pool_job.yaml"])
        made = pool.run(["make", "chtc-submit", "CONFIG=pool_job.yaml", "EXP=typed"], user=USER, cwd=checkout,
                        timeout=900)
        assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
        cluster = re.search(r"submitted to cluster (\d+)", made.stdout)[1]
        assert "invoke logs typed --follow" in made.stdout and "invoke stop typed" in made.stdout  # hints that work
        job = f"{cluster}.0"
        assert pool.path(f"/staging/{USER}/openpi").is_dir()  # chtc.submit made the remap's target
        pool.wait_for(cluster, lambda v: v and v[0] == "2", timeout=90)
        invoke = f"{checkout}/.venv/bin/invoke"
        status = pool.run([invoke, "chtc.status"], user=USER, cwd=checkout)
        assert status.returncode == 0 and "command-typed" in status.stdout, status.stdout + status.stderr
        deadline = time.monotonic() + 60
        tail = ""
        while "step:" not in tail and time.monotonic() < deadline:
            shown = pool.run([invoke, "chtc.logs", "--job-id", job], user=USER, cwd=checkout)
            tail = shown.stdout + shown.stderr
            time.sleep(2)
        assert "step:" in tail, tail
        by_run = pool.run([invoke, "logs", "typed"], user=USER, cwd=checkout)  # the run id is enough
        assert by_run.returncode == 0 and "step:" in by_run.stdout + by_run.stderr, by_run.stdout + by_run.stderr
        stopped = pool.run([invoke, "stop", "typed"], user=USER, cwd=checkout)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        pool.wait_for(cluster, lambda v: v is None, timeout=60)  # removed from the queue
