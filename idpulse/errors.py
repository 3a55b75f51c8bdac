"""Errors meant for the person at the keyboard: the CLIs print them as one line and exit 2."""


class UserError(Exception):
    """Bad input, config or checkpoint: the message says what is wrong and what to do."""


class CheckpointError(UserError):
    """A weight file is missing, unreadable, or does not fit the model it is loaded into."""


class SearchArgumentError(UserError, ValueError):
    """A search argument that cannot work (a ValueError for library callers, one line in the CLIs)."""
