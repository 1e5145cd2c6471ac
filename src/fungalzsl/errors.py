"""User-facing errors: one line that names the problem and the fix; the CLI prints it without a traceback."""

from __future__ import annotations


class FungalError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The message is one line: what is wrong, then what to do about it.
    """

    exit_code = 2


def fail(problem: str, fix: str | None = None) -> FungalError:
    """Build a FungalError from a problem and its fix (``raise fail(...)``)."""
    return FungalError(f"{problem}. {fix}" if fix else problem)
