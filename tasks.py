"""Trainyard's table of contents: `invoke --list`. Each namespace lives in helpers/cli/<name>.py."""

import importlib

from invoke import Collection

from helpers.cli import chtc, data, docker, local, top

namespace = Collection(top.plan, top.status, top.cleanup, top.logs)
namespace.add_collection(Collection.from_module(local, name="local"))
namespace.add_collection(Collection.from_module(chtc, name="chtc"))
namespace.add_collection(Collection.from_module(docker, name="docker"))
namespace.add_collection(Collection.from_module(data, name="data"))
namespace.add_collection(Collection.from_module(importlib.import_module("helpers.cli.verda"), name="verda"))
namespace.add_collection(Collection.from_module(importlib.import_module("helpers.cli.slurm"), name="slurm"))
namespace.add_collection(Collection.from_module(importlib.import_module("helpers.cli.runpod"), name="runpod"))
