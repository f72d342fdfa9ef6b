"""The one exception type the runtime raises for bad input; the CLI turns it into a one-line error."""
from __future__ import annotations


class GSError(Exception):
    """A user-facing error: bad input, missing or tampered file, impossible request.

    The message is a single line naming the problem; the command-line tools print ``error: <message>``
    and exit with status 2, without a traceback.
    """
