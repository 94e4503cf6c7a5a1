"""One error hierarchy for every provider.

Two families: the provider refused or could not take a request (credentials, invalid request, limits,
outage), and a job that was accepted but ended badly (moderation, generation failure). Every message
is safe to show a user or write to a log: clients scrub their secrets before raising.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """What went wrong, as stored with a job and shown to users."""

    CREDENTIALS = "credentials"
    INVALID_REQUEST = "invalid_request"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    MODERATION = "moderation"
    GENERATION_FAILED = "generation_failed"
    CANCELLED = "cancelled"


class ProviderError(Exception):
    """Base of every error a provider client raises."""

    kind: ErrorKind = ErrorKind.UNAVAILABLE
    #: Whether the same request may succeed if sent again later.
    retryable: bool = False

    def __init__(self, provider: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message
        #: The provider's own error code or reason, when it gave one.
        self.code = code

    def __str__(self) -> str:
        return f"{self.provider}: {self.message}"


class CredentialsRefused(ProviderError):
    """The API key or token was refused."""

    kind = ErrorKind.CREDENTIALS


class InvalidRequest(ProviderError):
    """The provider refused the request as invalid; sending it again will not help."""

    kind = ErrorKind.INVALID_REQUEST


class InsufficientCredits(ProviderError):
    """The provider account has no credits left for this request."""

    kind = ErrorKind.INSUFFICIENT_CREDITS


class RateLimited(ProviderError):
    """Too many requests, or too many jobs running at once, for the provider."""

    kind = ErrorKind.RATE_LIMITED
    retryable = True

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        concurrency: bool = False,
    ) -> None:
        super().__init__(provider, message, code=code)
        #: Seconds the provider asked us to wait, when it said.
        self.retry_after = retry_after
        #: True when the limit is on jobs running at once rather than on the request rate.
        self.concurrency = concurrency


class ProviderUnavailable(ProviderError):
    """The provider answered with a server error, an unreadable body, or not at all."""

    kind = ErrorKind.UNAVAILABLE
    retryable = True


class UnreadableAnswer(ProviderUnavailable):
    """The provider answered with a body that is not the documented JSON."""


class ProviderTimeout(ProviderUnavailable):
    """The provider did not answer within the request timeout."""


class SubmitOutcomeUnknown(ProviderUnavailable):
    """A job-creating request failed in a way that leaves open whether the provider created the job.

    Never resend such a request blindly: reconcile first (see the scheduler's per-provider rules).
    """

    retryable = False


class ModerationRejected(ProviderError):
    """The provider's content review refused the input or the result."""

    kind = ErrorKind.MODERATION


class GenerationFailed(ProviderError):
    """The provider accepted the job but could not produce a video."""

    kind = ErrorKind.GENERATION_FAILED


class CancelNotPossible(ProviderError):
    """The provider cannot cancel this task (no cancel API, or the task already started)."""

    kind = ErrorKind.INVALID_REQUEST
