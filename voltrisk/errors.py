"""Errors meant for people: the CLI prints their message as one sentence, no trace."""


class UserError(Exception):
    """Something the user can fix; the message says what to do."""
