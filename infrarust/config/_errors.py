"""What a configuration that fails to load reports: every problem, one ``FILE: KEY: message`` line each."""

from __future__ import annotations

from collections.abc import Iterable

from attrs import frozen


@frozen
class ConfigProblem:
    """One thing wrong (or, for warnings, worth knowing) in one key of one file.

    ``key`` is dotted (``rate_limit.window``, ``motd.online.favicon``, ``addresses[1]``); ``-`` means the
    file as a whole (not found, not valid TOML).
    """

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds every problem found, not just the first."""

    problems: tuple[ConfigProblem, ...]

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)
