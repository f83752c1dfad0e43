"""The one exception type users see: a clear message naming the file or key at fault."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input (config, data file, points file). The message names the file or key and the problem."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Pickle by (where, problem), so the error survives the trip from a reader process."""
        return (type(self), (self.where, self.problem))
