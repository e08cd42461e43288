"""Examples labelled with the loaded model's own decisions (`space.examples`)."""

from __future__ import annotations

from pipeline.core.decision import DECISIONS
from space.examples import model_examples


def test_examples_show_every_decision_the_model_makes(four_way_resources):
    examples = four_way_resources.examples
    assert [e.decision for e in examples.examples] == [d for d in DECISIONS for _ in range(2)]
    assert examples.missing == [] and examples.note == ""
    assert any("\u0600" <= e.text[0] <= "\u06ff" for e in examples.examples)


def test_each_example_is_labelled_with_what_a_click_gives(four_way_resources, space_resources):
    for resources in (four_way_resources, space_resources):
        for example in resources.examples.examples:
            assert resources.classifier.classify(example.text).decision == example.decision


def test_decisions_the_model_never_makes_are_named_not_faked(space_resources):
    """The untrained head gives most commands the same decision whatever the dataset says."""
    examples = space_resources.examples
    shown = {e.decision for e in examples.examples}
    assert shown and shown.isdisjoint(examples.missing)
    assert shown | set(examples.missing) == set(DECISIONS)
    if examples.missing:
        assert all(f"`{d}`" in examples.note for d in examples.missing)
        assert f"{examples.candidates} commands tried from the test split" in examples.note


def test_examples_are_the_same_on_every_start(four_way_resources):
    again = model_examples(four_way_resources.dataset, four_way_resources.classifier)
    assert again == four_way_resources.examples


def test_no_dataset_gives_no_examples(space_resources, tmp_path):
    from space.dataset import load_dataset_view
    from space.sources import resolve_source

    view = load_dataset_view(resolve_source(None, None, "dataset", tmp_path / "none"))
    examples = model_examples(view, space_resources.classifier)
    assert examples.examples == [] and examples.missing == list(DECISIONS)
