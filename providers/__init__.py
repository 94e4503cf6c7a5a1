"""Video generation providers: HTTP clients behind one provider-neutral interface.

Nothing here knows of Discord. The rest of the bot sees VideoProvider, the capability tables and the
error hierarchy.
"""

from providers.base import (
    AccountCheck,
    GenerationRequest,
    Submission,
    TaskRef,
    TaskState,
    TaskStatus,
    VideoProvider,
)
from providers.callbacks import Callback, CallbackNews, CallbackRefused
from providers.errors import ErrorKind, ProviderError
from providers.options import Capabilities, Operation, OptionSpec

__all__ = [
    "AccountCheck",
    "Callback",
    "CallbackNews",
    "CallbackRefused",
    "Capabilities",
    "ErrorKind",
    "GenerationRequest",
    "Operation",
    "OptionSpec",
    "ProviderError",
    "Submission",
    "TaskRef",
    "TaskState",
    "TaskStatus",
    "VideoProvider",
]
