"""The server's settings: limits, batching, security. One frozen dataclass, checked once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """What ``jina-vdb serve`` is started with (its flags map one to one).

    Attributes:
        store: A store URL (``connectors.stores``) for the collection routes, or None.
        api_key: Bearer token every ``/v1`` route requires; None: no key.
        allow_private_urls: Fetch image URLs that resolve to private, loopback or
            link-local addresses (off: a server that fetches any URL is an SSRF hole).
        max_items: Most inputs / points in one request (413 beyond).
        max_body_bytes: Largest request body (413 beyond).
        max_tokens_per_text: Longest text in tokens, prompt prefix included (413 beyond,
            or truncated when the request says ``truncate: true``).
        max_image_bytes: Largest image (downloaded or base64-decoded).
        max_image_pixels: Largest decoded image (PIL's decompression-bomb limit).
        url_timeout_s: Whole-download deadline of one image URL.
        max_queue: Most requests waiting for the model (503 with Retry-After beyond).
        max_wait_ms: How long the model worker waits for company before a forward.
        batch_tokens: Token budget of one gathered batch.
        task_patience_ms: Least time a request of another LoRA task waits while requests of
            the loaded task keep coming (task switches re-merge the weights).
    """

    store: str | None = None
    api_key: str | None = None
    allow_private_urls: bool = False
    max_items: int = 512
    max_body_bytes: int = 32 * 2**20
    max_tokens_per_text: int = 8192
    max_image_bytes: int = 20 * 2**20
    max_image_pixels: int = 89_478_485
    url_timeout_s: float = 10.0
    max_queue: int = 256
    max_wait_ms: float = 5.0
    batch_tokens: int = 8192
    task_patience_ms: float = 200.0

    def __post_init__(self) -> None:
        for name in (
            "max_items",
            "max_body_bytes",
            "max_tokens_per_text",
            "max_image_bytes",
            "max_image_pixels",
            "max_queue",
            "batch_tokens",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.url_timeout_s <= 0 or self.max_wait_ms < 0 or self.task_patience_ms < 0:
            raise ValueError(
                f"url_timeout_s must be > 0, max_wait_ms and task_patience_ms >= 0, got "
                f"{self.url_timeout_s!r}, {self.max_wait_ms!r} and {self.task_patience_ms!r}"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty; leave it out to run without one")

    def __repr__(self) -> str:  # the key never reaches a log line
        shown = {k: v for k, v in self.__dict__.items() if k != "api_key"}
        key = "set" if self.api_key else "none"
        return f"ServeSettings(api_key={key}, {shown})"
