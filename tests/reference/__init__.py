"""The vendored provider reference files (SOURCES.md beside this file says where each comes from and when)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """A vendored reference file; a missing one is an error, never a silent skip."""
    found = HERE / name
    if not found.is_file():
        raise FileNotFoundError(f"tests/reference/{name} is missing: it is vendored with the repository")
    return found
