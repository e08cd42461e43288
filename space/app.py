"""The LM-Action Space: classify a command before a Large Action Model acts on it.

UI only. Predictions come from `pipeline.model.inference.Predictor`, decisions and reasons from
`pipeline.core.decision`, attribute names and criteria from `pipeline.core.schema`. The Space classifies
commands; it never executes them.

This module builds the app from its tabs and launches it: `space.classify` (one command),
`space.batch` (a file of commands) and `space.about` (model, data, limitations and the API), on
what `space.resources` loads once at start-up (`space.sources` says from where).

Run: `python -m space.app --host 127.0.0.1 --port 7860` (on the Hub: `python app.py`).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pipeline.serve import json_type
from space.about import about_tab, api_snippet  # noqa: F401 (pipeline.hub.stage reads api_snippet here)
from space.batch import MAX_UPLOAD_MB, batch_tab
from space.classifier import ClassificationPayload
from space.classify import FOCUS_ON_WIDE_SCREENS_JS, classify_tab
from space.fairness import SINGLE_CONCURRENCY, SINGLE_GROUP, BatchQueue, trusted_proxies
from space.render import CSS
from space.resources import SpaceResources, load_resources
from space.sessions import install_lazy_session_config, keep_live_sessions
from space.sources import SpaceConfig, SpaceLoadError

if TYPE_CHECKING:
    import gradio as gr
    from fastapi import FastAPI

log = logging.getLogger("space.app")

# Gradio's queue: events waiting across all groups, and worker slots for running ones. The
# batch queue's limits (space.fairness) keep batches far below both, so a flood of uploads
# never takes the places single commands need.
QUEUE_MAX_SIZE = 256
MAX_THREADS = 64
# Queue positions go to waiting clients this often. Gradio's default ("auto") sends every
# waiting event its position each time an event starts: with 64 API clients waiting, 64
# messages (each waking that client's stream) per single command served.
QUEUE_STATUS_EVERY_S = 1.0
# Uploads and result files are deleted from Gradio's cache after this many seconds.
CACHE_MAX_AGE_S = 3600
# Sessions whose component state Gradio keeps in memory (its default, 10,000, holds a copy of
# every component's config per session: about 60 kB each here, 600 MB in all once an API's
# one-call sessions fill it). The Space keeps no state a user would lose with an old session.
STATE_SESSION_CAPACITY = 1_000


def _loaded_line(res: SpaceResources) -> str:
    """One line: what model and data the Space runs, and a short warning only where a Hub repo
    that was asked for could not be loaded."""
    line = f"**Model** {res.model_source.describe()} · **Dataset** {res.dataset.source.describe()}"
    notes = [n for n in (res.model_source.note, res.dataset.source.note) if n]
    if notes:
        line += " · ⚠ " + "; ".join(notes) + ": using the local build"
    return line


def build_app(
    res: SpaceResources,
    space_ref: str | None = None,
    batches: BatchQueue | None = None,
    proxies: int | None = None,
) -> "gr.Blocks":
    """The Blocks app: Classify, Batch and About & data tabs, and the two API endpoints.
    `batches` admits and orders batch files (default: `BatchLimits()`); `proxies` is how many
    trusted proxies tell the client's address (default: `trusted_proxies()`)."""
    import gradio as gr

    classifier = res.classifier
    space_ref = space_ref or os.environ.get("SPACE_ID") or "http://127.0.0.1:7860"
    batches = batches or BatchQueue()
    batch_limits = batches.limits
    proxies = trusted_proxies() if proxies is None else proxies

    def classify(command: str) -> ClassificationPayload:
        """Classify one command: decision (allow / confirm / cannot_do / block), reasons,
        the six attribute labels and their probabilities, and whether it is uncertain."""
        if not isinstance(command, str):
            raise gr.Error(f"command: expected a string, got {json_type(command)}")
        return classifier.classify(command).as_dict()

    # gr.api reads the types from the signature; this module's annotations are strings.
    classify.__signature__ = inspect.signature(classify, eval_str=True)  # type: ignore[attr-defined]

    with gr.Blocks(
        title="LM-Action: should the agent do this?",
        analytics_enabled=False,
        delete_cache=(CACHE_MAX_AGE_S, CACHE_MAX_AGE_S),
    ) as app:
        gr.Markdown(
            "# LM-Action\n"
            "Should a computer-using agent carry out a command? LM-Action predicts six attributes "
            "of the command and a decision: **allow**, **confirm** first, **cannot do** or "
            "**block**. It classifies commands; it never executes them."
        )
        gr.Markdown(_loaded_line(res), elem_id="loaded", elem_classes="lma-loaded")
        with gr.Tabs():
            with gr.Tab("Classify", id="classify"):
                classify_tab(res)
            with gr.Tab("Batch", id="batch"):
                batch_tab(classifier, batches, proxies)
            with gr.Tab("About & data", id="about"):
                about_tab(res, space_ref)
        gr.Markdown(
            f"<div class='lma-footer'>LM-Action classifies commands and never executes them "
            f"(backend {res.backend}). Single commands are served before batch files; "
            f"{batch_limits.running} file classifies at a time and up to {batch_limits.waiting} "
            "wait, one per person.</div>"
        )
        endpoint = gr.api(
            classify,
            api_name="classify",
            concurrency_id=SINGLE_GROUP,
            concurrency_limit=SINGLE_CONCURRENCY,
        )
        # gr.api names its output by position ("1st"); the API page and view_api() show this.
        app.fns[endpoint["id"]].outputs[0].label = "classification"
    # Gradio's queue recomputes a summary of its last GRADIO_ANALYTICS_MAX_EVENTS events (10,000
    # by default) after every event, for a monitoring page this Space does not serve: a cost per
    # single command that grows with uptime. Recompute it rarely, over few events.
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "500")
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "500")
    app.queue(
        max_size=QUEUE_MAX_SIZE,
        default_concurrency_limit=SINGLE_CONCURRENCY,
        status_update_rate=QUEUE_STATUS_EVERY_S,
    )
    keep_live_sessions(app)
    install_lazy_session_config(app)
    return app


def space_api(res: SpaceResources) -> "FastAPI":
    """The gate's HTTP API (`pipeline.serve`) on the Space's model, sharing its lock; responses
    name the Hub model id (a local model by its folder's name, not its path); the schema is at
    /v1/openapi.json, since Gradio serves /openapi.json itself."""
    from pipeline.serve import create_api

    classifier = res.classifier
    return create_api(
        classifier.predictor,
        model_name=res.model_source.ref if res.model_source.kind == "hub" else None,
        lock=classifier.singles,
        openapi_url="/v1/openapi.json",
    )


def launch(
    app, host: str = "127.0.0.1", port: int | None = None, api: "FastAPI | None" = None, **kwargs
):
    """Launch with the Space's theme, CSS and upload limit; returns `launch`'s result. `api` (a
    FastAPI app, `space_api`) answers on the same port every path the Space does not serve."""
    import gradio as gr

    block = not kwargs.pop("prevent_thread_lock", False)
    result = app.launch(
        server_name=host,
        server_port=port,
        css=CSS,
        js=FOCUS_ON_WIDE_SCREENS_JS,
        theme=gr.themes.Soft(),
        max_file_size=f"{MAX_UPLOAD_MB}mb",
        max_threads=MAX_THREADS,
        state_session_capacity=STATE_SESSION_CAPACITY,
        # Messages the Space raises (gr.Error) are shown; other exceptions, which may name
        # server paths, only go to the log.
        show_error=False,
        prevent_thread_lock=True,
        **kwargs,
    )
    if api is not None:
        # Mounted after Gradio's own routes, so it answers only the paths they leave: /v1/...,
        # /healthz and /docs.
        app.server_app.mount("/", api)
    if block:
        app.block_thread()
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m space.app", description="Serve the LM-Action Space."
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    )
    parser.add_argument(
        "--model", help="Hub model id or local folder (default: MODEL_ID, else build/hub/model)"
    )
    parser.add_argument(
        "--dataset",
        help="Hub dataset id or local folder (default: DATASET_ID, else build/hub/dataset)",
    )
    parser.add_argument("--reports", type=Path, help="reports folder (default: build/reports)")
    return parser.parse_args(argv)


def config_from_args(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> SpaceConfig:
    """Environment first, then the CLI: a folder argument is local, anything else a Hub id."""
    config = SpaceConfig.from_env(environ)
    changes: dict[str, Any] = {}
    if args.model:
        local = Path(args.model).is_dir()
        changes["model_id"] = None if local else args.model
        if local:
            changes["model_dir"] = Path(args.model)
    if args.dataset:
        local = Path(args.dataset).is_dir()
        changes["dataset_id"] = None if local else args.dataset
        if local:
            changes["dataset_dir"] = Path(args.dataset)
    if args.reports:
        changes["reports_dir"] = args.reports
    return replace(config, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    try:
        resources = load_resources(config_from_args(args))
    except SpaceLoadError as exc:
        log.error("%s", exc)
        return 2
    app = build_app(resources)
    launch(app, host=args.host, port=args.port, api=space_api(resources))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
