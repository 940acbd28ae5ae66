"""runpod.mode start_command (seed 000): no SSH. The runtime bundle and job.json travel zipped and base64-encoded in
the pod's environment (TRAINYARD_BUNDLE_0, _1, ... in 32 KiB pieces), the secrets (HF_TOKEN, WANDB_API_KEY) as pod
environment variables; the pod's start command (`args`) only decodes the bundle and runs it — it holds no secret, so
none is ever in a process's argv. The launcher polls the pod's status (one call per runpod.poll_seconds) and prints
the state and the cost so far; `invoke logs RUN` reads the container's output through REST v2's pod log stream (and
progress goes to the webhook, notify.webhook_url). Pod env values have no documented size limit at RunPod [INF]; the
bundle is about 90 KB of base64."""

from __future__ import annotations

import time

from helpers.backends.base import EXIT_DONE, EXIT_FAILED, EXIT_LOST, EXIT_STOPPED
from helpers.backends.lifecycle import COST_EVERY_S, Flow, HostSpec, cost_line
from helpers.backends.provider import ERROR, GONE, STOPPED, call
from helpers.backends.runpod.pods import PROVIDER, start_command
from helpers.bundle import BUNDLE_ENV, bundle_env
from helpers.console import say, warn


class StartCommandFlow(Flow):
    """runpod.mode start_command (seed 000): no SSH. The bundle travels in the pod's environment, the pod's start
    command runs it, and the launcher polls the pod until it ends. Create, the ledger, Ctrl-C, SIGTERM, recovery
    and ending are the one lifecycle's (helpers/backends/lifecycle.py: run_on_instance, Flow)."""

    @staticmethod
    def stage(provider, job, machine: dict, host_env: dict[str, str], spec: HostSpec, mode: str):
        """The run folder, and a provider whose pods carry it: the bundle in the pod's environment, the secrets as
        pod environment variables (never in the start command). No secret in the folder; no heartbeat either
        (nobody attaches over SSH): only how the pod ends itself."""
        from helpers.bundle import stage_run

        run_dir = stage_run(job, spec.machine, {}, provider.price_per_hour)
        pieces = bundle_env(run_dir)
        say(f"the pod's start command runs the bundle ({len(pieces)} x {BUNDLE_ENV}_* in its env; no SSH)")
        return run_dir, provider.with_pod_env({**host_env, **pieces}, start_command(job, len(pieces), mode))

    def run(self, mode: str, detach: bool) -> int:
        self.started = True  # the start command runs the job: from now on the pod can end itself
        if detach:
            self.detach()
            return EXIT_DONE
        return self.watch()

    def watch(self) -> int:
        """One status call per poll interval (429/5xx: backoff inside RunPodApi) until the pod ends."""
        job, provider, pod_id = self.job, self.provider, self.instance_id
        last_state, last_cost = None, time.monotonic()
        while True:
            state, _, _ = call(provider.get, pod_id, what="pod status")
            if state != last_state:
                say(f"pod {pod_id}: {(provider.last_pod or {}).get('status') or 'gone'} "
                    f"({cost_line(provider.price_per_hour, self.created)})")
                last_state = state
            if state == GONE:  # the runtime ended its pod (seed 000: !CMD STOP), or someone else did
                self.ledger.record(PROVIDER, self.name, "terminated", instance_id=pod_id, ended=time.time(),
                                   by="the pod itself")
                self.ended = True
                say(f"pod {pod_id} ended itself (or was terminated elsewhere); checkpoints are in {job.store} "
                    f"({cost_line(provider.price_per_hour, self.created)})")
                return EXIT_DONE
            if state == STOPPED:
                return self.stopped()
            if state == ERROR:
                warn(f"pod {pod_id} is {(provider.last_pod or {}).get('status')}: terminating it")
                self.end(keep_disk=True)
                return EXIT_FAILED
            if self.spec.deadline_epoch and time.time() > self.spec.deadline_epoch:
                verb = "terminating" if job.limits.terminate_on_stop else "stopping"
                warn(f"time limit ({job.time_limit_seconds:.0f}s + {job.grace_seconds:.0f}s grace) passed and the pod "
                     f"still runs: {verb} it (launcher backstop)")
                self.end(keep_disk=True, stop_only=not job.limits.terminate_on_stop)
                return EXIT_STOPPED
            if time.monotonic() - last_cost >= COST_EVERY_S:
                last_cost = time.monotonic()
                say(f"[trainyard] pod {pod_id} {state}; {cost_line(provider.price_per_hour, self.created)}")
            time.sleep(provider.poll_seconds)

    def stopped(self) -> int:
        """The pod stopped: a spot interruption (lost), or it stopped itself (terminated, or kept with
        --no-terminate)."""
        job, pod_id = self.job, self.instance_id
        if self.provider.preempted():
            warn(f"spot pod {pod_id} was interrupted; checkpoints synced so far are in {job.store}. "
                 "Launch again to resume from there.")
            self.end(keep_disk=True)
            return EXIT_LOST
        if job.limits.terminate_on_stop:  # seed 000 --terminate
            say(f"pod {pod_id} stopped itself: terminating it (limits.terminate_on_stop)")
            self.end(keep_disk=True)
            return EXIT_DONE
        self.ledger.record(PROVIDER, self.name, "stopped", instance_id=pod_id)
        self.ended = True
        warn(f"pod {pod_id} is stopped and kept (--no-terminate): its volume bills until "
             f"`invoke runpod.stop --run-id {job.run_id}`")
        return EXIT_DONE

    def detach(self) -> None:
        self.ended = True  # on purpose: it keeps running
        ends = "ends itself when the job ends" if self.job.limits.end_when_done else \
            "keeps running after the job (limits.end_when_done is false)"
        say(f"detached: pod {self.instance_id} runs at ${self.provider.price_per_hour:.2f}/h and {ends}. "
            f"Status: invoke runpod.status; end now: invoke runpod.stop --run-id {self.job.run_id}")
