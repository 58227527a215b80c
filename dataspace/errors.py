"""The errors of the dataspace control plane.

Why a small hierarchy: every one of them becomes a DSP ERROR object (ContractNegotiationError,
TransferError, CatalogError) with an HTTP status; the API maps the class to the status in one
place and the message, which always starts with the path of what is wrong, becomes the
error's reason.
"""

from __future__ import annotations

from schemas.errors import PathError


class DataspaceError(PathError):
    """Something the control plane refuses (``DataspaceError(detail, path)``, the message
    ``path: detail``); `status` is the HTTP status it answers with."""

    status = 400
    code = "BAD_REQUEST"


class OdrlError(DataspaceError):
    """An ODRL policy outside the citymesh profile, or a rule the mesh cannot enforce."""

    code = "POLICY_NOT_ENFORCEABLE"


class InvalidMessage(DataspaceError):
    """A message that does not validate against the DSP 2025-1 JSON Schema."""

    code = "INVALID_MESSAGE"


class InvalidTransition(DataspaceError):
    """A message that is not allowed in the current state of the negotiation or transfer."""

    code = "INVALID_STATE_TRANSITION"


class NotFound(DataspaceError):
    """No such negotiation, transfer, dataset or agreement, or not the caller's (DSP answers both with 404)."""

    status = 404
    code = "NOT_FOUND"


class Unauthorized(DataspaceError):
    """No token, or a token that is expired, wrongly signed, for another audience or an unknown participant."""

    status = 401
    code = "UNAUTHORIZED"


class Forbidden(DataspaceError):
    """An authenticated participant asking for something its role does not allow (e.g. approving as a consumer)."""

    status = 403
    code = "FORBIDDEN"


class Unavailable(DataspaceError):
    """The control topics could not be written or read now; nothing was changed."""

    status = 503
    code = "UNAVAILABLE"
