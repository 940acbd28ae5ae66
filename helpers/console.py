"""Everything Trainyard prints goes through here, so the redaction filter sees it."""

from __future__ import annotations

import sys
from functools import cache

from helpers.secrets import redact


@cache
def console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def say(message: str = "", style: str | None = None) -> None:
    console().print(redact(str(message)), style=style, markup=False)


def warn(message: str) -> None:
    say(message, style="yellow")


def fail(message: str) -> None:
    """One line on stderr: the user-facing error format."""
    print(f"error: {redact(message)}", file=sys.stderr)


def table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    from rich.table import Table

    t = Table(title=title)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*(redact(str(cell)) for cell in row))
    console().print(t)
