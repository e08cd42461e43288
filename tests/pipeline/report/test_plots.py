"""The report figure helper: saved where asked, always closed."""

import pytest

from pipeline.report.plots import figure, pyplot


def test_figure_saves_a_png_and_closes_it(tmp_path):
    path = tmp_path / "bars.png"
    with figure(path, 1, 2, figsize=(4, 2)) as (fig, axes):
        axes[0].bar(["a", "b"], [1, 2])
    assert path.read_bytes().startswith(b"\x89PNG")
    assert fig.number not in pyplot().get_fignums()


def test_a_failing_plot_writes_nothing_and_still_closes(tmp_path):
    path = tmp_path / "broken.png"
    with pytest.raises(ValueError):
        with figure(path) as (fig, ax):
            raise ValueError("bad data")
    assert not path.exists()
    assert fig.number not in pyplot().get_fignums()
