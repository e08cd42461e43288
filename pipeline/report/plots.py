"""One way to draw a report figure: matplotlib without a display, saved and closed."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(path: Path, nrows: int = 1, ncols: int = 1, *, dpi: int = 110, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """`(fig, axes)` from `plt.subplots(nrows, ncols, **subplots)`; on leaving the block the
    figure is laid out tight, saved to `path` at `dpi` and closed (closed also on an error)."""
    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
