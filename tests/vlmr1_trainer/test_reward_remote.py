"""Remote rewards against a real HTTP server on localhost: slow, failing, wrong count, non-numbers,
auth, and an endpoint that is down when training starts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from vlmr1_core.errors import UserError
from vlmr1_core.reward_config import RemoteRewardSpec, RewardSpec
from vlmr1_trainer.rewards.remote import RemoteReward, RemoteRewardError
from vlmr1_trainer.rewards.setup import probe_rewards

Answer = Callable[[dict[str, Any], int], tuple[int, Any]]


class Endpoint:
    """A scoring endpoint whose answer to the n-th request (from 1) is ``answer(body, n)``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.requests.append(body)
                    endpoint.headers.append(dict(self.headers))
                    n = len(endpoint.requests)
                    endpoint.in_flight += 1
                    endpoint.most_in_flight = max(endpoint.most_in_flight, endpoint.in_flight)
                try:
                    status, payload = endpoint.answer(body, n)
                finally:
                    with endpoint.lock:
                        endpoint.in_flight -= 1
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/score"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], Endpoint]]:
    started: list[Endpoint] = []

    def start(answer: Answer) -> Endpoint:
        started.append(Endpoint(answer))
        return started[-1]

    yield start
    for endpoint in started:
        endpoint.close()


def has_answer(body: dict[str, Any], n: int) -> tuple[int, Any]:
    return 200, {"scores": [float("<answer>" in c) for c in body["completions"]]}


def remote(url: str, **fields: Any) -> RemoteRewardSpec:
    return RemoteRewardSpec.model_validate({"url": url, "backoffSeconds": 0, **fields})


def test_scores_batches_with_columns_params_and_the_token(serve: Callable[[Answer], Endpoint]) -> None:
    endpoint = serve(has_answer)
    spec = remote(endpoint.url, batchSize=2, authSecret={"name": "s", "key": "k"})
    reward = RemoteReward("judge", spec, {"strict": True}, environ={"VLMR1_REWARD_AUTH_JUDGE": "tok"})
    metrics: dict[str, float] = {}
    scores = reward(
        ["<answer>A</answer>", "B", "<answer>C</answer>"],
        solution=["A", "B", "C"],
        images=[object()] * 3,  # never sent
        log_metric=metrics.__setitem__,
    )
    assert scores == [1.0, 0.0, 1.0]
    assert sorted(len(r["completions"]) for r in endpoint.requests) == [1, 2]  # batchSize 2
    first = next(r for r in endpoint.requests if len(r["completions"]) == 2)
    assert first == {
        "reward": "judge",
        "completions": ["<answer>A</answer>", "B"],
        "columns": {"solution": ["A", "B"]},
        "params": {"strict": True},
    }
    assert {h["Authorization"] for h in endpoint.headers} == {"Bearer tok"}
    assert metrics == {"rewards/judge/failures": 0.0}


def test_concurrency_is_bounded(serve: Callable[[Answer], Endpoint]) -> None:
    def slow(body: dict[str, Any], n: int) -> tuple[int, Any]:
        time.sleep(0.2)
        return has_answer(body, n)

    endpoint = serve(slow)
    reward = RemoteReward("judge", remote(endpoint.url, batchSize=1, concurrency=2))
    assert reward(["<answer>x</answer>"] * 6) == [1.0] * 6
    assert endpoint.most_in_flight == 2


def test_5xx_is_retried_with_backoff_then_scores(serve: Callable[[Answer], Endpoint]) -> None:
    endpoint = serve(lambda body, n: (503, b"busy") if n <= 2 else has_answer(body, n))
    waits: list[float] = []
    spec = remote(endpoint.url, maxRetries=3, backoffSeconds=0.5)
    reward = RemoteReward("judge", spec, sleep=waits.append)
    assert reward(["<answer>1</answer>"]) == [1.0]
    assert waits == [0.5, 1.0]  # doubling
    assert len(endpoint.requests) == 3


def test_a_slow_answer_times_out_and_is_retried(serve: Callable[[Answer], Endpoint]) -> None:
    def first_hangs(body: dict[str, Any], n: int) -> tuple[int, Any]:
        if n == 1:
            time.sleep(1.5)
        return has_answer(body, n)

    endpoint = serve(first_hangs)
    reward = RemoteReward("judge", remote(endpoint.url, timeoutSeconds=0.3, maxRetries=1))
    started = time.monotonic()
    assert reward(["<answer>1</answer>"]) == [1.0]
    assert time.monotonic() - started < 1.4  # did not wait for the hung request
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize(
    ("answer", "fault"),
    [
        (lambda body, n: (200, {"scores": [1.0]}), "returned 1 score(s) for 2 completion(s)"),
        (lambda body, n: (200, {"scores": ["high", 1.0]}), "returned 'high' (str) at position 0"),
        (lambda body, n: (200, b"<html>oops</html>"), "not JSON"),
        (lambda body, n: (200, {"score": [1, 1]}), "without a 'scores' list"),
        (lambda body, n: (400, b"bad request"), "answered HTTP 400 bad request"),
        (lambda body, n: (500, b"down"), "failed 2 time(s), last: HTTP 500 down"),
    ],
)
def test_faults_fail_the_step_or_score_zero_and_count(
    serve: Callable[[Answer], Endpoint], answer: Answer, fault: str
) -> None:
    endpoint = serve(answer)
    failing = RemoteReward("judge", remote(endpoint.url, maxRetries=1))
    with pytest.raises(RemoteRewardError, match="judge") as raised:
        failing(["a", "b"])
    assert fault in str(raised.value) and endpoint.url in str(raised.value)
    retried = 2 if "500" in fault else 1  # only connection errors, timeouts and 5xx are retried
    assert len(endpoint.requests) == retried

    zeroing = RemoteReward("judge", remote(endpoint.url, maxRetries=1, onFailure="zero"))
    metrics: dict[str, float] = {}
    assert zeroing(["a", "b"], log_metric=metrics.__setitem__) == [0.0, 0.0]
    assert metrics == {"rewards/judge/failures": 2.0}


def test_connection_refused_is_retried_then_fails() -> None:
    waits: list[float] = []
    reward = RemoteReward("judge", remote("http://127.0.0.1:9/score", maxRetries=2), sleep=waits.append)
    with pytest.raises(RemoteRewardError, match="failed 3 time"):
        reward(["a"])
    assert len(waits) == 2


def test_a_missing_token_is_a_clear_error() -> None:
    spec = remote("http://127.0.0.1:9/score", authSecret={"name": "judge-token", "key": "token"})
    with pytest.raises(UserError, match="VLMR1_REWARD_AUTH_JUDGE is empty"):
        RemoteReward("judge", spec, environ={})


def _samples() -> list[Any]:
    from pathlib import Path

    from vlmr1_trainer.data import Sample

    return [Sample(Path("d.jsonl"), 1, (), "q?", "<answer> A </answer>", "default", target="<answer>A</answer>")]


def test_an_endpoint_down_at_start_is_an_error_before_training_with_the_fail_policy() -> None:
    spec = RewardSpec.model_validate({"name": "judge", "remote": {"url": "http://127.0.0.1:9/score", "maxRetries": 0}})
    assert spec.remote is not None
    with pytest.raises(UserError) as raised:
        probe_rewards([RemoteReward("judge", spec.remote)], [spec], _samples())
    assert raised.value.field == "spec.rewards[0].remote.url"
    assert "probe batch before training" in str(raised.value)

    zero = spec.model_copy(update={"remote": spec.remote.model_copy(update={"on_failure": "zero"})})
    assert zero.remote is not None
    probe_rewards([RemoteReward("judge", zero.remote)], [zero], _samples())  # a warning, not an error
