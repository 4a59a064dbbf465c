"""The one error the command line shows: a single line that names the problem and the fix."""

from __future__ import annotations


class ClientError(Exception):
    """An error the user can act on; printed as one line, exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())


class HttpError(ClientError):
    """The server answered with an error status."""

    def __init__(self, message: str, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
