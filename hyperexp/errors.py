"""Bad input: one family of errors that the entry points turn into one line.

Anything raised as an :class:`InputError` (a data file, a weights file, a setting, an unreachable
tracking store) is the user's to fix: the entry point prints ``hyperexp: error: <message>`` and
exits with ``exit_code`` (1; 2 for a :class:`UsageError`, a command line that cannot be read, as
argparse does). Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input; the message names the file or config key and the problem, in one line."""

    exit_code = 1


class UsageError(InputError):
    """A command line that cannot be read: an unknown option or key, a value of the wrong type."""

    exit_code = 2
