"""Shared pytest set-up. Each area registers its fixtures module here."""

pytest_plugins = [
    "fixtures_lerobot",
    "fixtures_slurm",
    "fixtures_verda",
    "fixtures_hub",
    "fixtures_runpod",
]
