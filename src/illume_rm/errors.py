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


def run_script(main) -> None:
    """Run a script's ``main()`` as the CLI runs a command: a UserError is one line on stderr and its
    exit status (2), not a traceback (the diagnostics' ``__main__``)."""
    import sys

    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
