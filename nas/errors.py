"""User-facing errors: the command line prints the message as one line and exits with code 2."""
from searchspace.errors import SpaceError


class UserError(Exception):
    """Bad input from the user (a missing dataset, a wrong flag combination, ...)."""


USER_ERRORS = (UserError, SpaceError)
