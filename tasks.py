"""Trainyard's table of contents: `invoke --list`. Each namespace lives in helpers/cli/<name>.py."""

from invoke import Collection

from helpers.cli import chtc, data, docker, hfjobs, local, runpod, slurm, top, verda

namespace = Collection(top.plan, top.train, top.status, top.cleanup, top.logs, top.stop, top.fetch)
namespace.configure({"trainyard": {"env_file": ".env", "runs_dir": "runs"}})  # helpers/workspace.py
for module in (local, runpod, verda, hfjobs, slurm, chtc, docker, data):
    namespace.add_collection(Collection.from_module(module, name=module.__name__.rsplit(".", 1)[1]))
