"""The service's error hierarchy. Each class names its HTTP status and a machine-readable code.

No web framework here: `dense_reward_server.api.errors` maps these to the SPEC error body in
one place.
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Base of every error the API reports; `code` is stable and machine-readable."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        index: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.index = index
        self.field = field


# Client errors (4xx): the request is wrong; retrying it unchanged fails again.
class ClientError(ServiceError):
    status = 400
    default_code = "bad_request"


class MalformedRequest(ClientError):
    status = 400
    default_code = "malformed_json"


class InvalidRequest(ClientError):
    status = 422
    default_code = "invalid_request"


class Unauthorized(ClientError):
    status = 401
    default_code = "unauthorized"


class NotFound(ClientError):
    status = 404
    default_code = "not_found"


class TokenizerMismatch(ClientError):
    status = 409
    default_code = "tokenizer_mismatch"


class PayloadTooLarge(ClientError):
    status = 413
    default_code = "payload_too_large"


class Overloaded(ClientError):
    """Over capacity right now: retry after `retry_after_s`."""

    status = 429
    default_code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


# Server errors (5xx): the service failed; the request may be fine.
class ServerError(ServiceError):
    status = 500
    default_code = "internal_error"


class NonFiniteLogprob(ServerError):
    default_code = "non_finite_logprob"


class EngineUnavailable(ServerError):
    status = 503
    default_code = "engine_unavailable"


class NotReady(ServerError):
    status = 503
    default_code = "not_ready"


class DeadlineExceeded(ServerError):
    status = 504
    default_code = "deadline_exceeded"


class StartupError(Exception):
    """The server refuses to start (bad models, mismatched vocabularies, bad settings)."""
