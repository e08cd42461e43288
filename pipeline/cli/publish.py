"""`python -m pipeline publish`: upload the staged folders to the Hugging Face Hub.
Parses the arguments, reads the files, calls `pipeline.hub.publish` and writes what it returns."""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import BuildLayout, stage_config
from pipeline.hub.publish import (
    KINDS,
    PublishConfig,
    PublishError,
    format_plan,
    hub_api,
    plan_publish,
    publish,
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="list every file and target repo; no network")
    parser.add_argument(
        "--only", action="append", choices=KINDS, default=[], help="publish only this folder (repeatable)"
    )


def main(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    for name in ("httpx", "httpx2"):  # request lines at INFO would bury the summary
        logging.getLogger(name).setLevel(logging.WARNING)
    config = stage_config(PublishConfig, "publish", args.preset, args.overrides)
    layout = BuildLayout(args.build_dir)
    kinds = tuple(k for k in KINDS if not args.only or k in args.only)
    try:
        plan = plan_publish(layout, config, kinds)
        if args.dry_run:
            print("dry run: nothing is sent to the Hub")
            print("\n".join(format_plan(plan)))
            return 0
        published = publish(plan, hub_api())
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HfHubHTTPError as exc:
        print(f"error: the Hub refused the request: {exc}", file=sys.stderr)
        return 1
    for p in published:
        deleted = f", deleted {len(p.deleted)} stale file(s)" if p.deleted else ""
        print(f"{p.kind} {p.repo_id}: commit {p.commit[:12]}, tag {p.tag}{deleted} ({p.url})")
    return 0
