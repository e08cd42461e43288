"""`python -m pipeline serve`: serve the gate over HTTP: /v1/classify, /v1/moderations, /healthz.
Parses the arguments, loads the model once and runs the API of `pipeline.serve` under uvicorn."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.core.config import BuildLayout
from pipeline.model.inference import BACKENDS, ModelLoadError, Predictor, PredictorConfig
from pipeline.serve import create_api

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir", type=Path, help="model folder (default: <build-dir>/hub/model, else <build-dir>/model)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=BACKENDS, default=PredictorConfig.backend)
    parser.add_argument(
        "--threads",
        type=int,
        help="intra-op threads (default: the runtime's choice); on a busy 2-core host 1 thread "
        "kept single-command latency steady where 2 threads waited on each other",
    )
    parser.add_argument("--model-name", help="the model name responses give (default: the folder's name)")


def main(args: argparse.Namespace) -> int:
    import uvicorn

    layout = BuildLayout(args.build_dir)
    model_dir = args.model_dir or (
        layout.hub_model if (layout.hub_model / "config.json").is_file() else layout.model
    )
    try:
        predictor = Predictor(model_dir, PredictorConfig(backend=args.backend, num_threads=args.threads))
    except (ModelLoadError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    api = create_api(predictor, model_name=args.model_name)
    log.info("serving %s on http://%s:%d (docs at /docs)", model_dir, args.host, args.port)
    uvicorn.run(api, host=args.host, port=args.port, log_level="debug" if args.verbose else "info")
    return 0
