"""OpenAI-compatible chat completions through the official ``openai`` client: OpenAI itself, vLLM, Ollama,
llama.cpp's server, LM Studio, and Gemini's and Claude's OpenAI-compatible endpoints.

Why our own retry loop instead of the client's: we need jittered exponential backoff that tests can shrink to
milliseconds, Retry-After honoured, and, when retries run out, one line that says what to do (start the
server, set the key) rather than a stack trace. The API key is read from an environment variable and
passed only to the client: it is never logged or written to a record.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from urllib.parse import urlparse

from fungalzsl.errors import FungalError, fail
from fungalzsl.text.backends.base import Backend, BackendOptions, Endpoint, Request, Sampling

# Hosts that always want a key; any other (local) server gets a placeholder when no key is set.
_KEYED_HOSTS = ("api.openai.com", "generativelanguage.googleapis.com", "api.anthropic.com")
# A description is at most a few hundred tokens; a longer answer is cut here, before the clean-up and
# duplicate checks would spend minutes on megabytes (it is then resampled as too long).
MAX_ANSWER_CHARS = 65_536


class _NoContent(Exception):
    """The server answered 200 without any text (``content: null`` or no choices): retried like a 5xx."""


class OpenAIChatBackend(Backend):
    def __init__(self, kind: str, model: str, endpoint: Endpoint, options: BackendOptions) -> None:
        import openai

        self._openai = openai
        self.kind, self.model, self.options = kind, model, options
        env_url = os.environ.get("OPENAI_BASE_URL") if kind == "openai" else None
        self.base_url = options.base_url or env_url or endpoint.base_url or "https://api.openai.com/v1"
        self.key_env = options.api_key_env or endpoint.key_env
        key = os.environ.get(self.key_env) if self.key_env else None
        host = urlparse(self.base_url).hostname or ""
        if not key and (host in _KEYED_HOSTS or options.api_key_env):
            raise fail(
                f"no API key for {kind}:{model} at {self.base_url}",
                f"set the environment variable {self.key_env} (or name another with --api-key-env)",
            )
        # max_retries=0: retries are ours (see module docstring).
        # Until one request has succeeded, a refused connection means "no server there": fail fast rather than
        # back off for half a minute. After that, it means the server went away: retry with backoff.
        self._reached = False
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=key or "not-needed", timeout=options.timeout, max_retries=0
        )

    def describe(self) -> str:
        return f"{self.kind}:{self.model}"

    def complete(self, requests: list[Request], sampling: Sampling) -> list[str | BaseException]:
        # Daemon worker threads rather than a ThreadPoolExecutor: on Ctrl-C the process exits at once
        # instead of waiting (up to --timeout) for requests in flight; a resume redoes them.
        not_run = RuntimeError("not run")
        out: list[str | BaseException] = [not_run] * len(requests)
        todo = queue.SimpleQueue()
        for i in range(len(requests)):
            todo.put(i)

        def work() -> None:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    out[i] = self._one(requests[i], sampling)
                except Exception as e:  # returned, not raised: finished siblings are still saved
                    out[i] = e

        threads = [
            threading.Thread(target=work, daemon=True, name=f"describe-{k}")
            for k in range(max(1, min(self.options.concurrency, len(requests))))
        ]
        # --timeout bounds each read, not a whole answer: a server trickling bytes would never time out.
        # Every request gets its tries' worth of --timeout (twice, for the backoff) as a hard deadline.
        waves = -(-len(requests) // len(threads))
        limit = 2 * self.options.timeout * (self.options.max_retries + 1) * waves
        deadline = time.monotonic() + limit
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive() and time.monotonic() < deadline:
                t.join(0.1)
        if any(t.is_alive() for t in threads):
            stalled = fail(
                f"{self.base_url} did not finish its answers within {limit:g} s",
                "is the server overloaded? raise --timeout; finished descriptions are saved, rerun to resume",
            )
            out = [stalled if r is not_run else r for r in out]
        return out

    def _one(self, req: Request, sampling: Sampling) -> str:
        oa = self._openai
        kwargs: dict[str, object] = {
            "model": self.model,
            "messages": req.messages(),
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
            "seed": req.seed,
        }
        if sampling.top_p is not None:
            kwargs["top_p"] = sampling.top_p
        if sampling.top_k is not None:  # not in OpenAI's schema; vLLM, Ollama and llama.cpp accept it
            kwargs["extra_body"] = {"top_k": sampling.top_k}
        last: Exception | None = None
        for attempt in range(self.options.max_retries + 1):
            try:
                resp = self.client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
                self._reached = True
                content = resp.choices[0].message.content if resp.choices else None
                if content is None:
                    raise _NoContent("the answer held no text")
                return content[:MAX_ANSWER_CHARS]
            except _NoContent as e:
                last = e
                if attempt == self.options.max_retries:
                    break
                time.sleep(self._delay(attempt, e))
            except (oa.AuthenticationError, oa.PermissionDeniedError):
                raise fail(
                    f"{self.base_url} rejected the API key for {self.describe()}",
                    f"check the environment variable {self.key_env or 'OPENAI_API_KEY'}",
                ) from None
            except oa.NotFoundError:
                raise fail(
                    f"model '{self.model}' not found at {self.base_url}",
                    "check the model name (e.g. 'ollama list') or --base-url",
                ) from None
            except (oa.RateLimitError, oa.InternalServerError, oa.APIConnectionError) as e:
                last = e
                never_reached = type(e) is oa.APIConnectionError and not self._reached
                if attempt == self.options.max_retries or (never_reached and attempt >= 1):
                    break
                time.sleep(self._delay(attempt, e))
            except oa.APIStatusError as e:  # 400 and friends: retrying will not help
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise fail(
                    f"{self.base_url} refused the request ({msg[:200]})", "check the model and options"
                ) from None
        raise self._give_up(last)

    def _delay(self, attempt: int, err: Exception) -> float:
        """Exponential backoff with full jitter; a server's Retry-After wins when it asks for longer."""
        base = self.options.backoff * (2**attempt)
        delay = base * (0.5 + random.random())
        resp = getattr(err, "response", None)
        retry_after = resp.headers.get("retry-after") if resp is not None else None
        try:
            if retry_after is not None:
                delay = max(delay, min(float(retry_after), 60.0))
        except ValueError:
            pass
        return delay

    def _give_up(self, err: Exception | None) -> FungalError:
        oa, n = self._openai, self.options.max_retries
        keep = "finished descriptions are saved; rerun the same command to resume"
        if isinstance(err, oa.APITimeoutError):
            return fail(
                f"{self.base_url} timed out ({self.options.timeout:g} s) {n + 1} times",
                f"raise --timeout; {keep}",
            )
        if isinstance(err, oa.APIConnectionError):
            return fail(
                f"cannot reach {self.base_url}", f"is the server running and --base-url right? {keep}"
            )
        if isinstance(err, _NoContent):
            return fail(
                f"{self.base_url} answered without any text {n + 1} times", f"check the model; {keep}"
            )
        if isinstance(err, oa.RateLimitError):
            return fail(
                f"{self.base_url} is rate limiting (429) after {n + 1} tries", f"lower --concurrency; {keep}"
            )
        status = getattr(err, "status_code", "5xx")
        return fail(f"{self.base_url} answered with server errors ({status}) {n + 1} times", keep)

    def close(self) -> None:
        self.client.close()
