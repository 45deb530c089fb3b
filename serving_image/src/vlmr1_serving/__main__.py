"""``python -m vlmr1_serving --spec FILE``: the serving image's entry point.

1. Read the spec (:mod:`vlmr1_serving.spec`) and build the engine command line, so a
   bad ``engine.args`` fails in a second, before any download.
2. Fetch the checkpoint and verify it against ``model.digest`` (:mod:`vlmr1_serving.fetch`);
   on any mismatch exit 3 with the reason: no engine ever serves unverified weights.
3. Start the uniform metrics adapter (:mod:`vlmr1_serving.metrics`) in a thread.
4. Run the engine and stay its parent: SIGTERM, SIGINT and SIGHUP are forwarded to it
   and its exit status becomes ours (128 + N when a signal N ended it).

Why not ``exec`` the engine: exec replaces this process, and the metrics adapter thread
with it. ``--no-metrics`` does exec (the engine becomes the container's main process
and receives signals directly), for engines scraped in their own terms.

``--dry-run`` prints the argv and environment as JSON, with the checkpoint at the path it
would have, and exits without fetching or starting anything.

Exit codes: 2 invalid spec or engine arguments, 3 checkpoint not fetched or not verified,
otherwise the engine's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from vlmr1_serving.engines import Argv, EngineArgError, build_argv
from vlmr1_serving.fetch import FetchError, fetch_checkpoint, planned_path
from vlmr1_serving.metrics import ENGINE_METRICS_PATH, start_adapter
from vlmr1_serving.spec import ServedSpec, SpecError, load_spec

log = logging.getLogger("vlmr1_serving")

EXIT_SPEC = 2
EXIT_CHECKPOINT = 3
DEFAULT_METRICS_PORT = 9500
"""The operator's default ``servingMetricsPort`` (it sets VLMR1_SERVING_METRICS_PORT)."""
ENV_FILE_VAR = "VLMR1_ENGINE_ENV_FILE"
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m vlmr1_serving",
        description="Serve a VLMService: verify the checkpoint, start the engine, export uniform metrics.",
    )
    parser.add_argument("--spec", required=True, help="VLMService spec or object, YAML or JSON")
    parser.add_argument("--dry-run", action="store_true", help="print the engine argv as JSON and exit")
    parser.add_argument("--name", help="VLMService name (default: $VLMR1_SERVICE_NAME or metadata.name)")
    parser.add_argument("--model-uri", help="pinned checkpoint uri, for a spec with model.fromJob")
    parser.add_argument("--model-digest", help="its sha256:<hex> manifest digest")
    parser.add_argument(
        "--port", type=int, default=int(env.get("VLMR1_SERVING_PORT") or 0) or None, help="engine HTTP port"
    )
    parser.add_argument("--host", default=env.get("VLMR1_SERVING_HOST") or "0.0.0.0", help="bind address")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("VLMR1_SERVING_METRICS_PORT") or DEFAULT_METRICS_PORT),
        help="port of the uniform vlmr1_serving_* metrics",
    )
    parser.add_argument("--no-metrics", action="store_true", help="no adapter; exec the engine in this process")
    return parser.parse_args(argv)


def _argv_for(served: ServedSpec, path: str, port: int, host: str) -> Argv:
    return build_argv(served.spec, path, port, served.served_name, host=host)


def engine_environment(argv: Argv, environ: Mapping[str, str], env_file: str | None) -> dict[str, str]:
    """The engine's environment: ours, then the image's engine env file, then the engine's own.

    The Ascend images' toolkits are configured by ``set_env.sh`` scripts meant to be
    sourced by a shell, which an exec-form entry point never runs. The Dockerfile sources
    them once at build time and writes what they changed to a JSON file
    (``VLMR1_ENGINE_ENV_FILE``), applied here for the engine only.
    """
    env = dict(environ)
    if env_file:
        try:
            extra = json.loads(Path(env_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecError(f"engine environment file {env_file}: {exc}") from exc
        if not isinstance(extra, dict):
            raise SpecError(f"engine environment file {env_file}: expected a JSON object")
        env.update({str(k): str(v) for k, v in extra.items()})
    env.update(argv.env)
    return env


def _run(argv: Argv, env: dict[str, str]) -> int:
    proc = subprocess.Popen(argv.argv, env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        served = load_spec(args.spec, name=args.name, model_uri=args.model_uri, model_digest=args.model_digest)
        port = args.port or served.spec.port
        planned = _argv_for(served, str(planned_path(served.uri, served.digest)), port, args.host)
    except (SpecError, EngineArgError, FetchError) as exc:
        print(f"vlmr1-serving: {exc}", file=sys.stderr)
        return EXIT_SPEC
    if args.dry_run:
        print(planned.to_json())
        return 0
    try:
        fetched = fetch_checkpoint(served.uri, served.digest)
    except FetchError as exc:
        print(f"vlmr1-serving: refusing to serve: {exc}", file=sys.stderr)
        return EXIT_CHECKPOINT
    log.info("checkpoint %s verified (%s, step %s) at %s", served.uri, fetched.digest, fetched.step, fetched.path)
    engine = _argv_for(served, str(fetched.path), port, args.host)
    if engine.argv[0] == "python":
        # The dev server runs in this interpreter's environment, wherever `python` points.
        engine.argv[0] = sys.executable
    for note in engine.notes:
        log.warning("%s", note)
    name = served.spec.engine.name
    try:
        env = engine_environment(engine, os.environ, os.environ.get(ENV_FILE_VAR))
    except SpecError as exc:
        print(f"vlmr1-serving: {exc}", file=sys.stderr)
        return EXIT_SPEC
    if args.no_metrics:
        log.info("exec %s", engine.argv)
        os.execvpe(engine.argv[0], engine.argv, env)
    engine_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    start_adapter(
        name,
        f"http://{engine_host}:{port}{ENGINE_METRICS_PATH[name]}",
        args.metrics_port,
        addr=args.host,
        info={"digest": fetched.digest, "engine": name, "served_model_name": served.served_name},
    )
    log.info("uniform metrics on %s:%d; starting %s", args.host, args.metrics_port, engine.argv)
    return _run(engine, env)


if __name__ == "__main__":
    sys.exit(main())
