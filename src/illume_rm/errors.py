"""The one error type a user sees: a clear line naming what and where, exit status 2."""


class UserError(Exception):
    """Bad input from the user (a path, a line, a key). The CLI prints it and exits 2."""

    exit_code = 2


class Pending(UserError):
    """Work waits for people (judgements in the annotation page): not an error. The CLI prints
    the message and exits 0; rerunning the same command continues from there."""

    exit_code = 0


class MissingDependency(UserError):
    """A shipped-weights package or an optional tool is not installed."""
