"""Errors for bad user input: each carries one line that names what is wrong."""


class SpaceError(ValueError):
    """An arch, a space file or a budget string that cannot be used.

    The message is a single line naming the file, the stage and the field where known, so the
    command line can print it as is and exit with code 2.
    """
