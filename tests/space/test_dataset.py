"""The loaded dataset (`space.dataset`): splits, statistics and notes for what is missing."""

from __future__ import annotations

from pipeline.core.decision import DECISIONS
from space.dataset import dataset_statistics, load_dataset_view
from space.sources import resolve_source


def test_dataset_statistics_count_splits_languages_and_decisions(space_resources):
    sizes, decisions = dataset_statistics(space_resources.dataset)
    test = sizes.set_index("split").loc["test"]
    assert (test["rows"], test["lang: en"], test["lang: ar"]) == (14, 10, 4)
    assert decisions.set_index("split").loc["test"].to_dict() == {
        "allow": 4,
        "confirm": 4,
        "cannot_do": 3,
        "block": 3,
    }


def test_dataset_with_string_labels_loads_like_class_labels(
    tmp_path, dataset_writer, space_commands
):
    root = dataset_writer(tmp_path / "d", {"test": space_commands}, class_labels=False)
    view = load_dataset_view(resolve_source(None, None, "dataset", root))
    assert view.note == ""
    assert view.splits["test"]["risk"].tolist() == space_commands["risk"].tolist()
    assert set(dataset_statistics(view)[1].columns) == {"split", *DECISIONS}


def test_missing_or_incomplete_dataset_gives_a_note(tmp_path, dataset_writer, space_commands):
    import datasets

    missing = load_dataset_view(resolve_source(None, None, "dataset", tmp_path / "nope"))
    assert missing.splits == {} and "No dataset" in missing.note
    (tmp_path / "d").mkdir()
    datasets.Dataset.from_dict({"text": ["a"]}).to_parquet(str(tmp_path / "d" / "test.parquet"))
    incomplete = load_dataset_view(resolve_source(None, None, "dataset", tmp_path / "d"))
    assert incomplete.splits == {} and "lacks the column(s)" in incomplete.note
    odd = space_commands.assign(risk="severe")
    root = dataset_writer(tmp_path / "odd", {"test": odd}, class_labels=False)
    view = load_dataset_view(resolve_source(None, None, "dataset", root))
    assert view.splits == {} and "risk values ['severe'] outside" in view.note

