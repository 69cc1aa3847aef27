"""User-facing errors: the command line prints the message as one line and exits with code 2."""
from searchspace.errors import SpaceError


class UserError(Exception):
    """Bad input from the user (a missing dataset, a wrong flag combination, ...)."""


USER_ERRORS = (UserError, SpaceError)


def first_line(error: BaseException) -> str:
    """The line of a (Ray-wrapped) exception that names the original error, for a one-line report."""
    text = str(error).strip()
    # Ray wraps the trial's exception; its last line names the original error.
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]
