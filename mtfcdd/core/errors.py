"""Errors that mean "fix your input" (config, data, weights, checkpoint), and their command-line handling."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from hydra.core.hydra_config import HydraConfig

log = logging.getLogger("mtfcdd")


class UserError(Exception):
    """Bad input that the user can fix; the message names the file or key and what was expected."""


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a ``UserError`` into one clear line on stderr and exit status 2 (no traceback).

    In a Hydra multirun the error propagates, so the sweep stops at the failing job as Hydra reports it.
    """
    try:
        yield
    except UserError as err:
        # a config composed in-process (the compose API) leaves hydra.mode unset
        if HydraConfig.initialized() and getattr(HydraConfig.get().mode, "name", None) == "MULTIRUN":
            raise
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
