"""A client for any OpenAI-compatible chat-completions endpoint over plain HTTP (urllib: no extra dependency).

POSTs `{"model", "messages", "temperature"}` to `<url>/chat/completions` (or to `url` itself when it already ends
so) with `Authorization: Bearer <key>` when a key is set, and returns `choices[0].message.content`. HTTP 429, 5xx,
connection errors and timeouts are retried with exponential back-off (`backoff_s` x 2^attempt, or the server's
Retry-After when it says longer), at most `max_retries` times; other HTTP errors fail at once. Requests are spaced
to stay under `requests_per_minute`.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

URL_ENV = "DTVLA_VLM_URL"
MODEL_ENV = "DTVLA_VLM_MODEL"
API_KEY_ENV = "DTVLA_VLM_API_KEY"
RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 120.0  # a server asking for longer than this gets this


class ChatError(RuntimeError):
    """A request that failed for good (after retries, or with an error retrying cannot fix)."""


@dataclass(frozen=True)
class ChatSettings:
    """Where and how to ask; `from_env` fills url, model and key from DTVLA_VLM_URL, DTVLA_VLM_MODEL and
    DTVLA_VLM_API_KEY."""

    url: str  # base URL, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None  # never logged or written anywhere
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 2.0  # first retry delay; doubles each retry
    requests_per_minute: float = 60.0
    temperature: float = 0.0  # deterministic answers make the cache meaningful

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"VLM url must start with http:// or https://, got {self.url!r} (set --vlm-url or "
                             f"{URL_ENV})")
        if not self.model:
            raise ValueError(f"no VLM model name: set --vlm-model or {MODEL_ENV}")
        for name in ("timeout_s", "requests_per_minute"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_retries < 0 or self.backoff_s < 0:
            raise ValueError(f"max_retries and backoff_s must be >= 0, got {self.max_retries}, {self.backoff_s}")

    @classmethod
    def from_env(cls, url: str | None = None, model: str | None = None, api_key_env: str = API_KEY_ENV,
                 **options: Any) -> ChatSettings:
        """Explicit url/model win over the environment; the key is only read from the environment variable
        `api_key_env` (a key on a command line is visible to every user in `ps`)."""
        url = url or os.environ.get(URL_ENV, "")
        if not url:
            raise ValueError(f"no VLM endpoint: set --vlm-url or {URL_ENV} (an OpenAI-compatible base URL, "
                             "e.g. https://api.openai.com/v1)")
        return cls(url=url, model=model or os.environ.get(MODEL_ENV, ""), api_key=os.environ.get(api_key_env) or None,
                   **options)

    @property
    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


class RateLimiter:
    """Spaces calls at least 60 / requests_per_minute seconds apart (thread-safe)."""

    def __init__(self, requests_per_minute: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 60.0 / requests_per_minute
        self._clock, self._sleep = clock, sleep
        self._next = -float("inf")
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._sleep(self._next - now)
                now = self._next
            self._next = now + self.interval


class ChatClient:
    """Sends chat-completion requests with retries and a rate limit; counts what it did in `requests`/`retries`."""

    def __init__(self, settings: ChatSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._limiter = RateLimiter(settings.requests_per_minute, sleep=sleep)
        self.requests = 0  # HTTP requests sent, retries included
        self.retries = 0

    def complete(self, messages: list[dict[str, Any]]) -> str:
        """The assistant's reply text; raises ChatError when the endpoint does not give one."""
        body = json.dumps({"model": self.settings.model, "messages": messages,
                           "temperature": self.settings.temperature}).encode()
        attempt = 0
        while True:
            self._limiter.wait()
            self.requests += 1
            try:
                return _reply_text(self._post(body))
            except urllib.error.HTTPError as err:
                if err.code not in RETRIED_STATUS or attempt == self.settings.max_retries:
                    raise ChatError(f"{self.settings.endpoint}: HTTP {err.code} {err.reason}: "
                                    f"{_error_body(err)}") from err
                delay = max(self._backoff(attempt), _retry_after(err))
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
                if attempt == self.settings.max_retries:
                    raise ChatError(f"{self.settings.endpoint}: {err!r} (after {attempt + 1} attempts)") from err
                delay = self._backoff(attempt)
            attempt += 1
            self.retries += 1
            self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return self.settings.backoff_s * 2**attempt

    def _post(self, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        request = urllib.request.Request(self.settings.endpoint, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
            raw = response.read()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ChatError(f"{self.settings.endpoint}: the answer is not JSON ({raw[:200]!r})") from err


def _reply_text(answer: dict[str, Any]) -> str:
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise ChatError(f"not a chat-completions answer (no choices[0].message.content): {str(answer)[:200]}") from err
    if not isinstance(content, str):
        raise ChatError(f"choices[0].message.content is a {type(content).__name__}, expected a string")
    return content


def _retry_after(err: urllib.error.HTTPError) -> float:
    try:
        return min(float(err.headers.get("Retry-After", 0)), MAX_RETRY_AFTER_S)
    except (TypeError, ValueError):  # an HTTP date instead of seconds: use the back-off alone
        return 0.0


def _error_body(err: urllib.error.HTTPError) -> str:
    try:
        return err.read()[:300].decode(errors="replace")
    except OSError:
        return ""
