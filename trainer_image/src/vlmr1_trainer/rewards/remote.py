"""Remote rewards: batches POSTed to an HTTP endpoint (a code sandbox, an LLM judge).

Request ``{"reward": label, "completions": [...], "columns": {name: [...]}, "params": {...}}``;
answer ``{"scores": [number or null, ...]}``, one per completion. A scoring call is split into
requests of ``batchSize`` completions, at most ``concurrency`` in flight. A request that cannot
connect, times out or gets a 5xx is retried ``maxRetries`` times, waiting ``backoffSeconds``
and then twice as long each time; a 4xx, a body that is not JSON, a wrong count or a score that
is not a number is not retried (it would fail again). What then happens is the reward's
``onFailure``: ``fail`` raises RemoteRewardError (training stops with the endpoint and the
fault named), ``zero`` scores that request's completions 0.0 and counts them in
``rewards/<label>/failures``.

Standard library only (urllib, a thread pool): the trainer image needs nothing more.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vlmr1_core.reward_config import RemoteRewardSpec, auth_env_var
from vlmr1_trainer.rewards.reference import HEAVY_COLUMNS, RewardContractError, check_result
from vlmr1_trainer.rewards.registry import TRL_CONTROL_KWARGS, completion_text

__all__ = ["RemoteReward", "RemoteRewardError"]

logger = logging.getLogger(__name__)


class RemoteRewardError(RuntimeError):
    """A remote reward's request failed after its retries (with ``onFailure: fail``)."""


class _RetryableError(Exception):
    pass


def _jsonable(value: Any) -> Any:
    """A column value as JSON can carry it (tuples as lists; anything else as its text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    return str(value)


class RemoteReward:
    """A TRL reward callable that scores through ``spec.url``."""

    def __init__(
        self,
        label: str,
        spec: RemoteRewardSpec,
        params: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        prefix: str = "",
    ) -> None:
        self.__name__ = label
        self.name = label
        self.spec = spec
        self.params = dict(params or {})
        env = os.environ if environ is None else environ
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if spec.auth_secret is not None:
            token = env.get(auth_env_var(label))
            if not token:
                from vlmr1_core.errors import UserError

                raise UserError(
                    f"remote reward {label}: authSecret is set but {auth_env_var(label)} is empty",
                    fix=f"on a cluster, check Secret {spec.auth_secret.name} has key {spec.auth_secret.key}; "
                    f"locally, export {auth_env_var(label)}",
                )
            scheme = f"{spec.auth_scheme} " if spec.auth_scheme else ""
            self.headers[spec.auth_header] = f"{scheme}{token}"
        self.sleep = sleep
        self.prefix = prefix
        """Put before every completion (the model family's completion_prefix)."""
        self._executor: ThreadPoolExecutor | None = None
        self.failures = 0

    def __repr__(self) -> str:
        return f"RemoteReward({self.name!r}, {self.spec.url})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_executor": None}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        texts = [self.prefix + completion_text(c) for c in completions]
        columns = {
            k: _jsonable(v)
            for k, v in kwargs.items()
            if k not in TRL_CONTROL_KWARGS
            and k not in HEAVY_COLUMNS
            and isinstance(v, Sequence)
            and len(v) == len(texts)
        }
        size = self.spec.batch_size
        chunks = [(start, min(start + size, len(texts))) for start in range(0, len(texts), size)]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.spec.concurrency, thread_name_prefix=f"reward-{self.name}")
        futures = [
            self._executor.submit(self._score_chunk, texts[a:b], {k: v[a:b] for k, v in columns.items()})
            for a, b in chunks
        ]
        scores: list[float | None] = []
        failed = 0
        for future in futures:
            part, ok = future.result()
            scores.extend(part)
            failed += 0 if ok else len(part)
        self.failures += failed
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric(f"rewards/{self.name}/failures", float(failed))
        return scores

    def _score_chunk(self, texts: list[str], columns: dict[str, list[Any]]) -> tuple[list[float | None], bool]:
        try:
            return self.request(texts, columns), True
        except RemoteRewardError as exc:
            if self.spec.on_failure == "fail":
                raise
            logger.warning(
                "remote reward %s: %s; %d completion(s) scored 0.0 (onFailure: zero)", self.name, exc, len(texts)
            )
            return [0.0] * len(texts), False

    def request(self, texts: list[str], columns: Mapping[str, list[Any]]) -> list[float | None]:
        """One batch's scores, with the retries; a RemoteRewardError says why there are none."""
        body = json.dumps(
            {"reward": self.name, "completions": texts, "columns": dict(columns), "params": self.params}
        ).encode()
        delay = self.spec.backoff_seconds
        attempts = self.spec.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._post_once(body, len(texts))
            except _RetryableError as exc:
                if attempt == attempts:
                    raise RemoteRewardError(
                        f"remote reward {self.name}: {self.spec.url} failed {attempts} time(s), last: {exc}"
                    ) from None
                logger.info("remote reward %s: %s; retry %d in %.2f s", self.name, exc, attempt, delay)
                self.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _post_once(self, body: bytes, expected: int) -> list[float | None]:
        request = urllib.request.Request(self.spec.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.spec.timeout_seconds) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace").strip()
            if exc.code >= 500:
                raise _RetryableError(f"HTTP {exc.code} {detail}".strip()) from None
            raise RemoteRewardError(
                f"remote reward {self.name}: {self.spec.url} answered HTTP {exc.code} {detail}".strip()
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _RetryableError(f"{type(reason).__name__}: {reason}") from None
        try:
            answer = json.loads(payload)
        except ValueError:
            raise RemoteRewardError(
                f"remote reward {self.name}: {self.spec.url} answered something that is not JSON: {payload[:100]!r}"
            ) from None
        if not isinstance(answer, Mapping) or "scores" not in answer:
            raise RemoteRewardError(
                f"remote reward {self.name}: {self.spec.url} answered without a 'scores' list: {str(answer)[:100]}"
            )
        try:
            return check_result(f"{self.name} ({self.spec.url})", answer["scores"], expected)
        except RewardContractError as exc:
            raise RemoteRewardError(str(exc)) from None
