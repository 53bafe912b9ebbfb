"""Errors meant for people: the CLI prints their message as one sentence, no trace."""


class UserError(Exception):
    """Something the user can fix; the message says what to do."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An error's message cut to its first line, for a log line of a retry; its type's
    name when the message is empty (a bare ``TimeoutError()``)."""
    lines = str(exc).splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
