"""Bad input: one family of errors that the entry points turn into one line.

Anything raised as an :class:`InputError` (a data file, a weights file, a setting, an unreachable
tracking store) is the user's to fix: ``main()`` prints ``hyperexp: error: <message>`` and exits 1.
Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input; the message names the file or config key and the problem, in one line."""
