"""The API server's refusals, one class per status code the controller acts on."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A non-2xx answer, with the API server's Status object when it sent one."""

    def __init__(self, *, code: int, reason: str, message: str) -> None:
        self.code, self.reason, self.message = code, reason, message
        super().__init__(f"HTTP {code} {reason}: {message}")


class NotFound(ApiError):
    """404: no such object (or no such resource: the Grid CRD is not installed)."""


class Conflict(ApiError):
    """409: the name exists already (reason AlreadyExists) or the resourceVersion is stale (reason Conflict)."""


class Gone(ApiError):
    """410: the resourceVersion a watch or a list resumed from is too old (reason Expired): list again."""


class Invalid(ApiError):
    """422: the object does not validate against the API server's schema."""


BY_CODE: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict, 410: Gone, 422: Invalid}


def from_status(*, code: int, status: dict[str, Any] | None, text: str = "") -> ApiError:
    """The exception for an HTTP answer or a watch ERROR event carrying a Status object."""
    status = status if isinstance(status, dict) else {}
    code = int(status.get("code") or code)
    kind = BY_CODE.get(code, ApiError)
    return kind(code=code, reason=str(status.get("reason") or ""), message=str(status.get("message") or text[:500]))
