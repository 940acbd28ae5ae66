"""The runtime's main program: environment, logins, train (or resume), sync, end — in that order.

    python trainyard_runtime.pyz JOB.json [--mode auto|fresh|resume|resume_local] [--skip-setup]

Everything it does is written to `runtime.log`, `events.jsonl` and `status.json` beside JOB.json, so a
launcher on a laptop (or nobody at all) can follow it. Exit codes: 0 done, 1 trainer failed, 3 stopped early
(time limit, budget or a signal; the checkpoint was synced first).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

from helpers.runtime import environment, machine, nodes
from helpers.runtime.events import Events
from helpers.runtime.job import JobDoc
from helpers.runtime.progress import TQDM, loss_of, step_of
from helpers.runtime.store import STORAGE_FULL, SYNC_FIX_STORAGE, open_store
from helpers.runtime.sync import CheckpointSync
from helpers.runtime.trainers import runs_of, trainer_for
from helpers.secrets import REDACTOR, SECRET_NAMES, redact

EXIT_DONE, EXIT_FAILED, EXIT_STOPPED = 0, 1, 3
# A trainer that wrote its last checkpoint and then does not exit for this long is ended: torch's gloo/NCCL
# teardown can wait forever for a peer that is gone (seen with 2 processes of LeRobot 0.6.1 on CPU), and a hung
# process keeps a rented machine billing.
EXIT_HANG_S = float(os.environ.get("TRAINYARD_EXIT_HANG_S", "120"))


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (quotes optional); the host has no python-dotenv."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            values[key.strip()] = value.strip().strip("'\"")
    return values


class Runtime:
    def __init__(self, doc: JobDoc, workdir: Path, mode: str, node_rank: int = 0):
        """`node_rank` > 0: one of the other nodes of a multi-node job. It keeps its own files in node-<rank>/, syncs
        nothing, tells no webhook, and starts its trainer once node 0 has restored (helpers/runtime/nodes.py)."""
        self.doc, self.mode, self.node_rank, self.run_dir = doc, mode, node_rank, workdir
        self.workdir = workdir / f"node-{node_rank}" if node_rank else workdir
        self.workdir.mkdir(exist_ok=True)
        self.log_file = (self.workdir / "runtime.log").open("a", buffering=1)
        notify = doc.section("notify")
        self.events = Events(self.workdir / "events.jsonl", None if node_rank else notify.get("webhook_url"),
                             notify.get("project") or doc.run_id, doc.store)
        self.status = {"state": "starting", "run_id": doc.run_id, "step": None, "total": None, "loss": None, "synced_step": None}
        self.trainer_process: subprocess.Popen | None = None
        self.stop_reason: str | None = None
        self._stop = threading.Event()
        self._status_lock = threading.Lock()

    # --- output -------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        line = redact(f"[trainyard {time.strftime('%H:%M:%S')}] {message}")
        print(line, flush=True)
        self.log_file.write(line + "\n")

    def set_status(self, **changes) -> None:
        """status.json is replaced whole (readers never see half of it); several threads report, one at a time."""
        with self._status_lock:
            self.status.update(changes, updated=time.time())
            tmp = self.workdir / ".status.json.tmp"
            tmp.write_text(json.dumps(self.status))
            os.replace(tmp, self.workdir / "status.json")

    # --- the job ------------------------------------------------------------------------------------
    def main(self, bin_dir: Path) -> int:
        self.events.emit("start", f"run {self.doc.run_id} starting ({self.doc.framework})", stage="setup")
        self.check_deadman()
        self.logins()
        self.prepare_dataset()
        self.watch_deadline()
        runs = runs_of(self.doc)
        separate = len({run.output_dir for run in runs}) > 1  # different trainings: one store folder each
        code = EXIT_DONE
        for index, run in enumerate(runs):
            store = open_store(self.doc.store, base=Path.cwd(), prefix=run.output_dir.name if separate else "")
            trainer = trainer_for(self.doc, run, bin_dir, self.doc.gpu_count())
            code = self.train_one(trainer, store, index)
            if code != EXIT_DONE:
                break
        if code == EXIT_DONE:
            self.push_policy(trainer)
            self.events.emit("end", f"run {self.doc.run_id} finished", synced_step=self.status["synced_step"])
        elif code == EXIT_STOPPED:
            self.events.emit("stopped", f"stopped early: {self.stop_reason}", synced_step=self.status["synced_step"])
        else:
            self.events.emit("failure", "trainer exited with an error (see runtime.log)", synced_step=self.status["synced_step"])
        self.set_status(state={EXIT_DONE: "done", EXIT_STOPPED: "stopped", EXIT_FAILED: "failed"}[code], exit_code=code)
        self._stop.set()  # the deadline watcher has nothing left to stop
        self.events.close()
        self.end_machine(code)
        return code

    def logins(self) -> None:
        if os.environ.get("HF_TOKEN"):
            os.environ.setdefault("HUGGINGFACE_HUB_TOKEN", os.environ["HF_TOKEN"])
            self.log("Hugging Face: using HF_TOKEN from the environment")
        else:
            self.log("Hugging Face: no HF_TOKEN — public repos only, no Hub uploads")
        if os.environ.get("WANDB_API_KEY"):
            self.log("wandb: using WANDB_API_KEY from the environment")
        elif self.doc.section("wandb").get("enable"):
            os.environ["WANDB_MODE"] = "offline"
            self.log("wandb: enabled but no WANDB_API_KEY — logging offline")

    def prepare_dataset(self) -> None:
        """`dataset.synthetic: true` builds a small LeRobot dataset at dataset.root once (demo, tests)."""
        dataset = self.doc.section("dataset")
        root = Path(dataset.get("root") or "")
        if not dataset.get("synthetic") or (root / "meta" / "info.json").exists():
            return
        from helpers.runtime.synthetic_dataset import build

        self.log(f"building synthetic dataset {dataset['repo_id']} at {root}")
        build(str(root), dataset["repo_id"])

    def train_one(self, trainer, store, index: int) -> int:
        run = trainer.run
        if self.node_rank:  # node 0 restores into the shared filesystem; this node starts from what it decided
            resume_step = nodes.wait_for_node_0(self.run_dir, index, self.log)
        else:
            resume_step = self.prepare_checkpoint(trainer, store)
            nodes.node_0_ready(self.run_dir, index, resume_step)
        if resume_step is not None and resume_step >= run.steps:
            self.log(f"run {index + 1}: checkpoint at step {resume_step} already reaches {run.steps} steps — nothing to train")
            self.set_status(step=resume_step, total=run.steps, synced_step=None if self.node_rank else store.latest_step())
            return EXIT_DONE
        trainer.prepare()
        for note in trainer.notes():
            self.log(note)
        command = trainer.command(resume=resume_step is not None)
        self.log(("resuming from step %d: " % resume_step if resume_step is not None else "starting: ") + " ".join(command))
        self.set_status(state="training", step=resume_step or 0, total=run.steps, run_index=index)
        sync = None if self.node_rank else CheckpointSync(  # only node 0 syncs: one shared filesystem, node 0's store
            trainer.checkpoints, store, keep=self.doc.section("checkpoint").get("keep", 1),
            on_synced=partial(self.on_synced, store), on_error=partial(self.on_sync_error, store),
            poll_seconds=min(float(self.doc.section("checkpoint").get("upload_poll_seconds", 60)), 0.5),  # a readlink: cheap
            watch=self.doc.section("checkpoint").get("upload_every_save", True),
        ).start(already_synced=store.latest_step())
        env = {**os.environ, **trainer.environment(), "PYTHONUNBUFFERED": "1"}
        run.output_dir.parent.mkdir(parents=True, exist_ok=True)
        self.trainer_process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
            cwd=trainer.workdir(),
        )
        finished = threading.Event()
        threading.Thread(target=self.end_if_hung, args=(trainer, run.steps, finished), daemon=True).start()
        for line in self.trainer_process.stdout:
            self.on_output(line.rstrip("\n"))
        returncode = self.trainer_process.wait()
        if finished.is_set():  # ended by end_if_hung after its last checkpoint: the training is complete
            returncode = 0
        if sync is not None:
            self.log(f"trainer exited with code {returncode}; final sync ...")
            try:
                synced = sync.finish(timeout=600)
            except Exception as exc:  # the store is down: the alarm says so; the local checkpoint stays
                newest = trainer.checkpoints()
                self.on_sync_error(store, newest[-1][0] if newest else self.status["step"] or 0, exc)
                synced = sync.synced_step
            self.log(f"checkpoint in store {store.describe}: step {synced}")
        else:
            self.log(f"trainer exited with code {returncode} (node {self.node_rank}: node 0 syncs)")
        if self.stop_reason:
            return EXIT_STOPPED
        return EXIT_DONE if returncode == 0 else EXIT_FAILED

    def prepare_checkpoint(self, trainer, store) -> int | None:
        """Find what to resume from (or nothing) according to the mode; rebuild the layout the trainer expects."""
        local = trainer.checkpoints()
        local_step = local[-1][0] if local else None
        if self.mode == "fresh":
            return None
        if self.mode == "resume_local":
            found = find_local_checkpoint(trainer)
            if found is None:
                raise SystemExit("resume_local: no checkpoints/last with training_state/training_step.json found")
            return found
        store_step = store.latest_step() if self.mode in ("auto", "resume") else None
        if self.mode == "resume" and store_step is None and local_step is None:
            raise SystemExit(f"resume: no checkpoint in {store.describe}")
        if store_step is not None and (local_step is None or store_step > local_step):
            target = trainer.restore_into(store_step)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.log(f"restoring step {store_step} from {store.describe} ...")
            if target.exists():
                import shutil

                shutil.rmtree(target)
            store.restore(target)
            trainer.after_restore(store_step)
            self.events.emit("restored", f"restored checkpoint step {store_step} from {store.describe}", step=store_step)
            return store_step
        if local_step is None and self.mode in ("auto", "resume"):
            self.log(f"no checkpoint in {store.describe}: starting at step 0")
        return local_step

    # --- callbacks ----------------------------------------------------------------------------------
    def on_output(self, line: str) -> None:
        line = TQDM.sub("", line).strip()  # progress bars: the step lines carry the same numbers
        if not line:
            return
        self.log_file.write(redact(line) + "\n")
        print(redact(line), flush=True)
        if (step := step_of(line)) is not None:
            loss = loss_of(line)
            self.set_status(step=step, loss=loss if loss is not None else self.status["loss"])
            self.events.emit("progress", f"step {step}/{self.status['total']}", step=step)

    def on_synced(self, store, step: int, seconds: float) -> None:
        self.set_status(synced_step=step, sync_failed=None)
        self.log(f"synced checkpoint step {step} in {seconds:.1f}s")
        if store.not_freed:
            self.log(f"older checkpoint versions in {store.describe} not freed yet ({store.not_freed}); the next save retries")
        self.events.emit("checkpoint", f"checkpoint step {step} synced", step=step)

    def on_sync_error(self, store, step: int, exc: Exception) -> None:
        """A checkpoint that did not reach the store is an alarm (events, webhook, status), never just a log line."""
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        synced = self.status.get("synced_step")
        at_risk = max(self.status.get("step") or step, step) - (synced or 0)
        fix = (SYNC_FIX_STORAGE if STORAGE_FULL in why.lower() else
               "the next save retries; if it keeps failing, check the store and HF_TOKEN's write access")
        message = (f"checkpoint step {step} did not reach {store.describe}: {why} — {at_risk} steps at risk "
                   f"(in the store: step {synced}). {fix}")
        self.log(f"SYNC FAILED: {message}")
        self.set_status(sync_failed=message)
        self.events.emit("sync_failed", message, level="error", step=step, synced_step=synced, steps_at_risk=at_risk,
                         error=why, fix=fix)

    # --- limits and the end -------------------------------------------------------------------------
    def watch_deadline(self) -> None:
        deadline = self.doc.deadline
        if deadline is None:
            return

        def wait() -> None:
            if not self._stop.wait(max(0.0, deadline - time.time())):
                self.stop_trainer("time limit or budget reached")

        threading.Thread(target=wait, daemon=True).start()

    def end_if_hung(self, trainer, steps: int, finished: threading.Event) -> None:
        """End the trainer when its checkpoint of the last step is complete and it has not exited EXIT_HANG_S later."""
        process, since = self.trainer_process, None
        while process.poll() is None:
            time.sleep(2)
            done = trainer.checkpoints()
            if since is None and done and done[-1][0] >= steps:
                since = time.monotonic()
            if since is not None and time.monotonic() - since > EXIT_HANG_S and process.poll() is None:
                self.log(f"the trainer saved its last checkpoint (step {done[-1][0]}) {EXIT_HANG_S:.0f}s ago and has "
                         "not exited: ending it (a hung teardown, not a failure)")
                finished.set()
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(process.pid, sig)
                        process.wait(15)
                        return
                    except ProcessLookupError:
                        return
                    except subprocess.TimeoutExpired:
                        continue
                return

    def stop_trainer(self, reason: str) -> None:
        """Stop cleanly: SIGINT, then SIGTERM, then SIGKILL; the final sync follows in train_one."""
        self.stop_reason = self.stop_reason or reason
        self.log(f"stopping the trainer: {reason}")
        process = self.trainer_process
        for sig, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 15), (signal.SIGKILL, 0)):
            if process is None or process.poll() is not None:
                return
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                continue

    def push_policy(self, trainer) -> None:
        policy = self.doc.section("policy")
        repo = trainer.run.policy_repo_id
        if not (policy.get("push_to_hub") and repo and self.doc.framework == "lerobot"):
            return
        last = trainer.checkpoint_root() / "last" / "pretrained_model"
        if not last.exists():
            return
        try:
            from huggingface_hub import HfApi

            api = HfApi()
            api.create_repo(repo, private=policy.get("private", True), exist_ok=True)
            api.upload_folder(repo_id=repo, folder_path=str(last), commit_message="Trainyard: trained policy")
            self.log(f"pushed the trained policy to {repo}")
        except Exception as exc:
            self.log(f"policy push to {repo} failed: {exc}")

    def check_deadman(self) -> None:
        """Say at start whether this machine can end itself (RunPod: can the pod's own key reach its pod?), in the
        log, status.json and an event; one that cannot is an error event at once, not a surprise at the end."""
        armed = machine.deadman(self.doc.machine)
        if armed is None:
            return
        self.set_status(deadman=armed)
        self.log(f"dead-man {armed}")
        if armed.startswith("not armed"):
            self.events.emit("deadman_not_armed", f"this machine cannot end itself ({armed}): only the launcher or "
                             "`invoke cleanup` can", stage="setup", level="error")
        else:
            self.events.emit("deadman", f"dead-man {armed}", stage="setup")

    def end_machine(self, code: int) -> None:
        limits = self.doc.section("limits")
        if code == EXIT_STOPPED and self.stop_reason and self.stop_reason.startswith("signal"):
            return  # a scheduler asked us to stop (SLURM pre-timeout, Ctrl-C): it owns what happens next
        if limits.get("end_when_done", True) or self.stop_reason:
            self.log(machine.end_machine(self.doc.machine, alarm=self.deadman_failed))

    def deadman_failed(self, message: str) -> None:
        """Every means of ending this machine refused: the alarm, delivered now (this process may end any moment)."""
        price = self.doc.derived.get("price_per_hour")
        message += f" (${price:.2f}/h)" if price else ""
        self.log(message)
        self.set_status(deadman=f"failed: {message}")
        self.events.emit("deadman_failed", message, stage="end", level="error")
        self.events.close()


def find_local_checkpoint(trainer) -> int | None:
    """resume_local: the configured output_dir first, then outputs/train/**/checkpoints/last; highest step wins."""
    candidates = [trainer.checkpoint_root() / "last"] + sorted(Path("outputs/train").glob("**/checkpoints/last"))
    best: tuple[int, Path] | None = None
    for last in candidates:
        try:
            step = int(json.loads((last / "training_state" / "training_step.json").read_text())["step"])
        except (OSError, ValueError, KeyError):
            continue
        if best is None or step > best[0]:
            best = (step, last)
    if best is None:
        return None
    trainer.run.output_dir = best[1].parent.parent
    return best[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trainyard-runtime", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", type=Path)
    parser.add_argument("--mode", choices=["auto", "fresh", "resume", "resume_local"], default="auto")
    parser.add_argument("--skip-setup", action="store_true", help="use the Python running this (a prebuilt image)")
    parser.add_argument("--in-env", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--end-machine", action="store_true",
                        help="only end this machine as job.json says (the dead-man, when the runtime itself died)")
    args = parser.parse_args(argv)
    doc = JobDoc.load(args.job)
    workdir = args.job.resolve().parent
    dotenv = workdir / ".env"
    if dotenv.exists():
        for key, value in read_dotenv(dotenv).items():
            if not os.environ.get(key):  # the launcher's .env fills what the host's environment lacks
                os.environ[key] = value
    REDACTOR.add(*(os.environ.get(n, "") for names in SECRET_NAMES.values() for n in names))
    machine.hold_credentials(os.environ)  # the dead-man's, never the trainer's
    if args.end_machine:
        print(redact(f"[trainyard] {machine.end_machine(doc.machine)}"), flush=True)
        return 0
    if not (args.in_env or args.skip_setup or doc.config.get("runpod", {}).get("skip_setup")):
        bin_dir = environment.ensure(doc.config, log=lambda m: print(f"[trainyard] {m}", flush=True))
        python = bin_dir / "python"
        if Path(sys.prefix).resolve() != bin_dir.parent.resolve():  # not yet running inside the trainer's venv
            if sys.argv[0].endswith(".pyz"):
                entry = [str(Path(sys.argv[0]).resolve())]
            else:  # run from a checkout: python -m helpers.runtime
                entry = ["-m", "helpers.runtime"]
                os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
            os.execv(str(python), [str(python), *entry, *(argv if argv is not None else sys.argv[1:]), "--in-env"])
    bin_dir = Path(sys.executable).parent
    runtime = Runtime(doc, workdir, args.mode, node_rank=int(os.environ.get("TRAINYARD_NODE_RANK") or 0))

    def on_signal(signum, _frame):
        threading.Thread(target=runtime.stop_trainer, args=(f"signal {signal.Signals(signum).name}",), daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, on_signal)
    return runtime.main(bin_dir)
