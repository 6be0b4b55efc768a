"""The command line around a Hydra app: every refusal is one line ``hyperexp: error: ...``.

Hydra prints its own multi-line messages for a config it cannot compose (an unknown key or
option, a value of the wrong type, an override it cannot parse) and exits 1. :func:`run_app`
runs the app with Hydra's ``HYDRA_FULL_ERROR`` set, so that those errors reach it as exceptions,
and prints them in the project's words: usage errors exit 2, as argparse's do; bad input the app
raised (:class:`~hyperexp.errors.InputError`) exits 1; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn

from hydra._internal.utils import get_args_parser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from hyperexp.errors import InputError, UsageError

PROGRAM = "hyperexp"


def fail(error: InputError) -> NoReturn:
    print(f"{PROGRAM}: error: {error}", file=sys.stderr)
    sys.exit(error.exit_code)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _valid_keys(object_type) -> str:
    if dataclasses.is_dataclass(object_type):
        return f" (its keys: {', '.join(f.name for f in dataclasses.fields(object_type))})"
    return ""


def composition_error(error: Exception) -> UsageError:
    """Hydra's refusal to compose the config, as one line naming the override or key."""
    if isinstance(error, MissingConfigException) and error.options is not None:
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        return UsageError(f"{group}={option}: no such option (choose from {', '.join(error.options)})")
    if isinstance(error, OverrideParseException):
        return UsageError(f"{error.override}: cannot parse this override ({_first_line(error.message)})")
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            return UsageError(f"{cause.full_key}: no such config key{_valid_keys(cause.object_type)}")
        return UsageError(f"{cause.full_key}: {_first_line(cause.msg)}")
    return UsageError(_first_line(str(error)) or type(error).__name__)


def _refuse_unknown_flags() -> None:
    parser = get_args_parser()
    parser.error = lambda message: fail(UsageError(message))  # one line, not argparse's usage block
    parser.parse_args()


@contextlib.contextmanager
def refusals_as_one_line() -> Iterator[None]:
    """Bad input raised inside the block ends the process with its one line. Also for Hydra
    callbacks, whose exceptions Hydra reduces to warnings."""
    try:
        yield
    except (ConfigCompositionException, OverrideParseException) as error:
        fail(composition_error(error))
    except InputError as error:
        fail(error)


def run_app(app: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` app (called without arguments: it reads ``sys.argv``)."""
    _refuse_unknown_flags()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its own report
    with refusals_as_one_line():
        app()
