"""Errors a user can fix. Each prints as one line (file, key, problem, fix), exits with code 2, no traceback."""


class TrainyardError(Exception):
    """A problem the user can fix; `str()` is the one line we print."""

    exit_code = 2


class ConfigError(TrainyardError):
    """Bad job config: unknown key, wrong type, unknown GPU or model type, missing secret."""

    def __init__(self, key: str, problem: str, fix: str = "", source: str = ""):
        self.key, self.problem, self.fix, self.source = key, problem, fix, source
        super().__init__(self._line())

    def _line(self) -> str:
        where = ": ".join(part for part in (self.source, self.key) if part)
        text = f"{where}: {self.problem}" if where else self.problem
        return f"{text} — {self.fix}" if self.fix else text

    def with_source(self, source: str) -> "ConfigError":
        return ConfigError(self.key, self.problem, self.fix, source)


class ProviderError(TrainyardError):
    """A cloud or scheduler refused or failed a request after retries."""

    exit_code = 1
    nothing_left = False  # a refused create whose instance is known not to exist (or was ended): try elsewhere
