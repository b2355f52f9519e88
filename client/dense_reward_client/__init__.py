"""dense-reward-client: the Python client of dense-reward-server and its trainer adapters.

Needs only httpx and numpy; imports nothing of the server.

    from dense_reward_client import RewardClient
"""

from dense_reward_client.client import (
    AsyncRewardClient,
    AuthenticationError,
    DeadlineExceededError,
    InvalidRequestError,
    OverloadedError,
    PayloadTooLargeError,
    RewardClient,
    RewardServerError,
    ServiceUnavailableError,
    TokenizerMismatchError,
)
from dense_reward_client.fingerprint import tokenizer_fingerprint
from dense_reward_client.routing import PROMPT_KEY_HEADER, prompt_key
from dense_reward_client.types import ChatMessage, GroupCompletion, Include, RewardItem

__version__ = "0.1.0"

__all__ = [
    "PROMPT_KEY_HEADER",
    "AsyncRewardClient",
    "AuthenticationError",
    "ChatMessage",
    "DeadlineExceededError",
    "GroupCompletion",
    "Include",
    "InvalidRequestError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RewardClient",
    "RewardItem",
    "RewardServerError",
    "ServiceUnavailableError",
    "TokenizerMismatchError",
    "prompt_key",
    "tokenizer_fingerprint",
]
