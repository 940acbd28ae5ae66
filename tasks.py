"""Trainyard's table of contents: `invoke --list`. Each namespace lives in helpers/cli/<name>.py."""

from invoke import Collection

from helpers.cli import local, top

namespace = Collection(top.plan, top.status, top.cleanup, top.logs)
namespace.add_collection(Collection.from_module(local, name="local"))
