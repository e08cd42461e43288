"""Single-command latency of the Space's prediction function (`CommandClassifier.classify`).

`python -m space.latency --model build/hub/model --commands data/seed/en_personal.csv`
prints p50 / p90 / max in milliseconds over the commands (each classified once after warm-up,
or `--repeats N` times keeping its fastest).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.model.inference import Predictor, PredictorConfig
from space.batch import read_batch_file
from space.classifier import CommandClassifier
from space.sources import DEFAULT_MODEL_DIR

log = logging.getLogger("space.latency")


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call of one command."""

    calls: int
    p50_ms: float
    p90_ms: float
    max_ms: float

    def __str__(self) -> str:
        return (
            f"{self.calls} calls: p50 {self.p50_ms:.1f} ms, p90 {self.p90_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms"
        )


def measure_latency(
    classifier: CommandClassifier, commands: Sequence[str], warmup: int = 10, repeats: int = 1
) -> Latency:
    """Time `classifier.classify` on each command, one at a time, after `warmup` calls.

    With `repeats` > 1 each command keeps its fastest time, which filters out the stalls that
    other processes cause on a shared machine.
    """
    if not commands:
        raise ValueError("no commands to time")
    for text in list(commands)[:warmup]:
        classifier.classify(text)
    times = []
    for text in commands:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            classifier.classify(text)
            best = min(best, (time.perf_counter() - start) * 1000.0)
        times.append(best)
    ms = np.asarray(times)
    return Latency(
        len(ms), float(np.percentile(ms, 50)), float(np.percentile(ms, 90)), float(ms.max())
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m space.latency", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument(
        "--commands", type=Path, required=True, help="CSV (text column) or TXT of commands"
    )
    parser.add_argument("--limit", type=int, default=300, help="commands timed (default 300)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="times per command; the fastest counts"
    )
    parser.add_argument("--backend", default="auto", help="predictor backend: auto, torch or onnx")
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: runtime's)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    predictor = Predictor(
        args.model, PredictorConfig(backend=args.backend, num_threads=args.threads)
    )
    texts = read_batch_file(args.commands, max_rows=10**9).texts[: args.limit]
    latency = measure_latency(CommandClassifier(predictor), texts, repeats=args.repeats)
    print(f"{predictor.backend_detail}: {latency}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
