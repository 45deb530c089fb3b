"""Prediction sources of `vlmr1 eval`: saved predictions files (in order or by id) and the
endpoint client's HTTP behaviour (retries, refusals, model discovery, bounded concurrency)
against a scripted local HTTP server."""

from __future__ import annotations

import base64
import io
import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vlmr1_cli import main
from vlmr1_trainer.evaluation import endpoint as endpoint_module
from vlmr1_trainer.evaluation.endpoint import ChatEndpoint, EndpointError, chat_messages
from vlmr1_trainer.evaluation.predictions import PredictionsError, align, read_predictions

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"
VAL = f"{SHAPES / 'val.jsonl'}:{SHAPES / 'images'}"
LINES = [json.loads(line) for line in (SHAPES / "val.jsonl").read_text().splitlines()]


# --- predictions files -------------------------------------------------------------------------


def _write(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prediction": "a"}', "not json"], "p.jsonl:2: not valid JSON"),
        (['["a"]'], "p.jsonl:1: a JSON list, not an object"),
        (['{"answer": "a"}'], 'p.jsonl:1: "prediction" must be a string; the line has no prediction'),
        (['{"prediction": 3}'], 'p.jsonl:1: "prediction" must be a string; the line has a int prediction'),
        (['{"prediction": "a", "id": true}'], 'p.jsonl:1: "id" must be a string or an integer'),
        (['{"prediction": "a", "id": 1}', '{"prediction": "b"}'], "1 of 2 lines have an id"),
        (["", "  "], "has no predictions"),
    ],
)
def test_bad_predictions_files_name_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(PredictionsError) as caught:
        read_predictions(_write(tmp_path / "p.jsonl", lines))
    assert message in str(caught.value)


def test_predictions_in_order_must_match_the_sample_count(tmp_path: Path) -> None:
    file = read_predictions(_write(tmp_path / "p.jsonl", [{"prediction": "a"}, "", {"prediction": "b"}]))
    assert align(file, [None, None], "val.jsonl") == ["a", "b"]  # blank lines are skipped
    with pytest.raises(PredictionsError, match=r"2 predictions for 3 samples in val\.jsonl"):
        align(file, [None] * 3, "val.jsonl")


def test_predictions_matched_by_id(tmp_path: Path) -> None:
    file = read_predictions(_write(tmp_path / "p.jsonl", [{"id": "b", "prediction": "B"}, {"id": 7, "prediction": "S"},
                                                          {"id": "a", "prediction": "A"}]))  # fmt: skip
    assert align(file, ["a", 7, "b"], "val.jsonl") == ["A", "S", "B"]
    with pytest.raises(PredictionsError, match=r"no prediction for 1 sample\(s\) \(ids 'c'"):
        align(file, ["a", 7, "b", "c"], "val.jsonl")
    with pytest.raises(PredictionsError, match=r"1 prediction\(s\) for ids not in val\.jsonl \('b'"):
        align(file, ["a", 7], "val.jsonl")
    with pytest.raises(PredictionsError, match="have no id field"):
        align(file, ["a", None, "b"], "val.jsonl")
    twice = read_predictions(_write(tmp_path / "t.jsonl", [{"id": "a", "prediction": "1"}] * 2))
    with pytest.raises(PredictionsError, match="id 'a' occurs twice"):
        align(twice, ["a", "a"], "val.jsonl")


def _perfect_predictions(path: Path, *, ids: bool = False) -> Path:
    """Qwen2.5-VL answers: the ground truth mapped into each image's model-input frame, which
    the tiny builtin's processor gives (as `vlmr1 eval` computes it, from the processor alone)."""
    from vlmr1_trainer.evaluation.policy import load_reference
    from vlmr1_trainer.evaluation.runner import EvalSet, load_rows

    reference = load_reference("builtin://tiny-qwen2.5-vl")
    rows = load_rows(reference, EvalSet("val", "rec", str(SHAPES / "val.jsonl"), str(SHAPES / "images")))
    records = []
    for line, row in zip(LINES, rows, strict=True):
        (w, h), (iw, ih) = row["image_size"], row["input_size"]
        x1, y1, x2, y2 = json.loads(line["conversations"][1]["value"])
        box = [round(x1 * iw / w), round(y1 * ih / h), round(x2 * iw / w), round(y2 * ih / h)]
        answer = json.dumps({"bbox_2d": box, "label": "shape"})
        record: dict[str, Any] = {"prediction": f"<think>there</think><answer>{answer}</answer>"}
        if ids:
            record["id"] = line["id"]
        records.append(record)
    if ids:
        random.Random(3).shuffle(records)
    return _write(path, records)


def test_vlmr1_eval_scores_saved_predictions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["eval", "--data", VAL, "--task", "rec", "--name", "val", "--no-progress"]
    # The tiny Qwen2.5-VL's processor (no weights) gives the model-input size.
    reference = ["--checkpoint", "builtin://tiny-qwen2.5-vl"]
    in_order = _perfect_predictions(tmp_path / "p.jsonl")
    assert main([*common, *reference, "--predictions", str(in_order), "--output", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert record["metrics"] == {"eval/val/rec_acc": 1.0, "eval/val/rec_acc_reward": 1.0,
                                 "eval/val/samples": len(LINES), "eval/val/unparsed": 0}  # fmt: skip
    assert record["source"] == {"kind": "predictions", "files": {"val": str(in_order)}}
    assert record["checkpoint"] == "builtin://tiny-qwen2.5-vl" and record["family"] == "qwen2.5-vl"

    shuffled = _perfect_predictions(tmp_path / "s.jsonl", ids=True)
    args = [*common, *reference, "--predictions", str(shuffled), "--max-samples", "5", "--output", str(tmp_path / "b")]
    assert main(args) == 0
    samples = [json.loads(x) for x in (tmp_path / "b" / "val.samples.jsonl").read_text().splitlines()]
    assert [s["source"] for s in samples] == [f"{SHAPES / 'val.jsonl'}:{i}" for i in range(1, 6)]
    assert all(s["score"] == 1.0 for s in samples)

    # A results file is itself a predictions file: re-scoring it reproduces the metrics.
    rescored = [*common, *reference, "--predictions", str(tmp_path / "a" / "val.samples.jsonl")]
    assert main([*rescored, "--output", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["metrics"] == record["metrics"]
    capsys.readouterr()

    short = _write(tmp_path / "short.jsonl", [{"prediction": "x"}] * 3)
    assert main([*common, *reference, "--predictions", str(short), "--output", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert f"{short}: 3 predictions for {len(LINES)} samples in {SHAPES / 'val.jsonl'}" in err
    assert "Traceback" not in err and not (tmp_path / "d").exists()


def test_model_input_pixel_predictions_need_a_processor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictions = str(_perfect_predictions(tmp_path / "p.jsonl"))
    args = ["eval", "--data", VAL, "--task", "rec", "--family", "qwen2.5-vl", "--no-progress",
            "--predictions", predictions, "--output", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 2
    assert "answers boxes in model-input pixels" in capsys.readouterr().err
    # Boxes in a fixed frame need no processor: InternVL's 0-1000.
    args[args.index("qwen2.5-vl")] = "internvl"
    assert main(args) == 0
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["family"] == "internvl"


def test_one_predictions_file_per_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = str(_perfect_predictions(tmp_path / "p.jsonl"))
    code = main(["eval", "--data", VAL, "--data", f"{SHAPES / 'train.jsonl'}:{SHAPES / 'images'}", "--task", "rec",
                 "--family", "internvl", "--predictions", p])  # fmt: skip
    assert code == 2 and "1 predictions files for 2 --data sets" in capsys.readouterr().err


# --- the endpoint client -----------------------------------------------------------------------


class Scripted(ThreadingHTTPServer):
    """Answers each path from a list of (status, body, headers), the last one repeating."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: dict[str, list[tuple[int, Any, dict[str, str]]]] = {}
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.lock = threading.Condition()
        self.in_flight = self.most_in_flight = self.served = 0
        self.hold_until: int | None = None
        """Hold each chat request until this many are in flight (or all remaining ones are)."""
        self.total = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Scripted

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, path: str) -> None:
        steps = self.server.script[path]
        status, body, headers = steps.pop(0) if len(steps) > 1 else steps[0]
        payload = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer(self.path)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.bodies.append(body)
            server.auth.append(self.headers.get("Authorization"))
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
            server.lock.notify_all()
            hold = server.hold_until
            if hold is not None:  # the remaining requests count as they finish
                server.lock.wait_for(lambda: server.in_flight >= min(hold, server.total - server.served), timeout=10)
        try:
            self._answer(self.path)
        finally:
            with server.lock:
                server.in_flight -= 1
                server.served += 1
                server.lock.notify_all()


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _reply(text: str) -> tuple[int, Any, dict[str, str]]:
    return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}, {}


def _rows(n: int) -> list[dict[str, Any]]:
    from PIL import Image

    rows = []
    for i in range(n):
        image = Image.new("RGB", (30, 28), (i * 20 % 256, 7, 200))
        image.putpixel((3, 4), (1, 2, 3))
        prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"q{i}"}]}]
        rows.append({"prompt": prompt, "images": [image], "source": f"val.jsonl:{i + 1}"})
    return rows


def test_requests_carry_the_in_process_conversation_and_greedy_decoding(scripted: Scripted) -> None:
    from PIL import Image

    scripted.script = {"/v1/models": [(200, {"data": [{"id": "rec"}]}, {})], "/v1/chat/completions": [_reply("ok")]}
    rows = _rows(2)
    client = ChatEndpoint(scripted.base + "/v1/", concurrency=1, api_key="s3cret")
    assert client.generate(rows, max_new_tokens=17) == ["ok", "ok"]
    assert scripted.auth == ["Bearer s3cret"] * 2
    first = scripted.bodies[0]
    assert (first["model"], first["max_tokens"], first["temperature"], first["n"]) == ("rec", 17, 0.0, 1)
    [message] = first["messages"]
    image_part, text_part = message["content"]
    assert text_part == {"type": "text", "text": "q0"} and message["role"] == "user"
    url = image_part["image_url"]["url"]
    assert image_part["type"] == "image_url" and url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.tobytes() == rows[0]["images"][0].tobytes()  # lossless: the very pixels


def test_placeholders_and_images_must_pair_up() -> None:
    image = _rows(1)[0]["images"][0]
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "q"}]}]
    with pytest.raises(ValueError, match="more image placeholders"):
        chat_messages(prompt, [image])
    with pytest.raises(ValueError, match="1 image"):
        chat_messages([{"role": "user", "content": "q"}], [image])


def test_transient_failures_are_retried_with_backoff(scripted: Scripted) -> None:
    scripted.script = {
        "/v1/chat/completions": [
            (503, {"error": {"message": "warming up"}}, {}),
            (429, {"error": {"message": "slow down"}}, {"Retry-After": "7"}),
            _reply("fine"),
        ]
    }
    slept: list[float] = []
    client = ChatEndpoint(scripted.base, model="m", backoff=2.0, sleep=slept.append)
    assert client.generate(_rows(1), max_new_tokens=4) == ["fine"]
    assert len(scripted.bodies) == 3
    assert 1.0 <= slept[0] <= 2.0 and slept[1] == 7.0  # jittered first backoff, then Retry-After


def test_a_client_error_stops_with_the_servers_message(scripted: Scripted) -> None:
    scripted.script = {"/v1/chat/completions": [(400, {"error": {"message": "prompt is too long"}}, {})]}
    slept: list[float] = []
    with pytest.raises(EndpointError) as caught:
        ChatEndpoint(scripted.base, model="m", sleep=slept.append, concurrency=1).generate(_rows(3), max_new_tokens=4)
    message = str(caught.value)
    assert "answered 400 for sample val.jsonl:1: prompt is too long" in message and "--max-new-tokens" in message
    assert slept == [] and len(scripted.bodies) == 1  # not retried, and the other samples not sent


def test_an_unreachable_server_fails_after_the_retries(scripted: Scripted) -> None:
    port = scripted.server_address[1]
    scripted.shutdown()
    scripted.server_close()  # nothing listens on the port any more
    slept: list[float] = []
    client = ChatEndpoint(f"http://127.0.0.1:{port}", model="m", retries=2, sleep=slept.append)
    with pytest.raises(EndpointError, match=r"failed 3 times for sample val\.jsonl:1; last: .*refused"):
        client.generate(_rows(1), max_new_tokens=4)
    assert len(slept) == 2


def test_the_model_is_the_endpoints_only_one(scripted: Scripted) -> None:
    scripted.script = {"/v1/models": [(200, {"object": "list", "data": [{"id": "a"}, {"id": "b"}]}, {})]}
    with pytest.raises(EndpointError, match=r"lists 2 models \(a, b\).*--model"):
        ChatEndpoint(scripted.base).resolve_model()


def test_concurrency_is_bounded(scripted: Scripted) -> None:
    """Each request is held until three are in flight: a client sending more at once would
    push the maximum above three; one sending fewer would never reach it."""
    scripted.script = {"/v1/chat/completions": [_reply("x")]}
    scripted.hold_until, scripted.total = 3, 7
    assert ChatEndpoint(scripted.base, model="m", concurrency=3).generate(_rows(7), max_new_tokens=2) == ["x"] * 7
    assert scripted.most_in_flight == 3


def test_base_url_forms() -> None:
    assert endpoint_module.normalize_base_url("http://h:1/v1/chat/completions/") == "http://h:1/v1"
    with pytest.raises(EndpointError, match="not an http"):
        endpoint_module.normalize_base_url("h:8000")


def test_docstring_examples() -> None:
    import doctest

    result = doctest.testmod(endpoint_module)
    assert result.attempted > 0 and result.failed == 0
