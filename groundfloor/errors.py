"""Errors that the CLI turns into one clear line and a distinct exit code."""


class BadInput(Exception):
    """The user's input (a file, a config, a data set) is wrong. Exit code 2."""

    exit_code = 2

    def __init__(self, path, problem):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def pick(registry: dict, name, what: str):
    """registry[name] for a name the user gave; BadInput naming the known ones otherwise."""
    if name not in registry:
        raise BadInput(None, f"unknown {what} {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name]


class BudgetExceeded(Exception):
    """A measured figure is over its budget. Exit code 1."""

    exit_code = 1
