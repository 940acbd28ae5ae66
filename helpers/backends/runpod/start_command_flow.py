"""runpod.mode start_command (seed 000): no SSH. The runtime bundle and job.json travel zipped and base64-encoded in
the pod's environment (TRAINYARD_BUNDLE_0, _1, ... in 32 KiB pieces), the secrets (HF_TOKEN, WANDB_API_KEY) as pod
environment variables; the pod's start command (`args`) only decodes the bundle and runs it — it holds no secret, so
none is ever in a process's argv. The launcher polls the pod's status (one call per runpod.poll_seconds) and prints
the state and the cost so far; `invoke logs RUN` reads the container's output through REST v2's pod log stream (and
progress goes to the webhook, notify.webhook_url). Pod env values have no documented size limit at RunPod [INF]; the
bundle is about 90 KB of base64."""

from __future__ import annotations

from helpers.backends.base import EXIT_DONE
from helpers.backends.lifecycle import HostSpec, PolledFlow
from helpers.backends.runpod.pods import start_command
from helpers.bundle import BUNDLE_ENV, bundle_env
from helpers.console import say, warn
from helpers.errors import ProviderError
from helpers.runtime.machine import DEADMAN_FAILED

DEADMAN_TAIL = 50  # log lines read per check-in


class StartCommandFlow(PolledFlow):
    """runpod.mode start_command (seed 000): the bundle travels in the pod's environment and the pod's start command
    runs it; the lifecycle's PolledFlow follows the pod. Create, the ledger, Ctrl-C, SIGTERM, recovery and ending
    are the one lifecycle's (helpers/backends/lifecycle.py)."""

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

    def status_text(self, state: str) -> str:
        return (self.provider.last_pod or {}).get("status") or "gone"

    def preempted(self) -> bool:
        return self.provider.preempted()

    def check_in(self) -> int | None:
        """The pod's last log lines (REST v2 getPodLogs, the account's key): a runtime whose dead-man every means
        refused says so there (helpers/runtime/machine.py: "cannot end itself"), and the launcher, still attached,
        ends the pod itself."""
        try:
            lines = list(self.provider.api.log_lines(self.instance_id, tail=DEADMAN_TAIL, follow=False))
        except ProviderError:
            return None  # the log is a courtesy: the deadline backstop still holds
        if not any(DEADMAN_FAILED in line for line in lines):
            return None
        message = (f"pod {self.instance_id}: its dead-man could not end it (the pod's own key was refused): terminating "
                   "it from here")
        warn(message)
        self.ledger.record(self.provider.name, self.name, "running", instance_id=self.instance_id,
                           warning=f"deadman_failed: {message}")  # `invoke status` shows it with the run
        self.end(keep_disk=True)
        return EXIT_DONE
