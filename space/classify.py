"""The Classify tab: one command in, the decision banner and the three criteria's cards out,
with example commands to click."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.schema import ATTRIBUTE_NAMES, CRITERIA
from space.classifier import MAX_INPUT_CHARS, empty_classification
from space.dataset import decision_examples
from space.render import ATTRIBUTE_TITLES, DECISION_TITLES, banner_html, label_title, label_values

if TYPE_CHECKING:
    from space.resources import SpaceResources


def classify_tab(res: SpaceResources) -> None:
    """The tab's components and events, inside the caller's `gr.Tab`."""
    import gradio as gr

    classifier = res.classifier

    def classify_ui(command: str | None):
        result = classifier.classify(command)
        labels = [
            gr.Label(value=value, label=label_title(name, result))
            for name, value in zip(ATTRIBUTE_NAMES, label_values(result))
        ]
        return [banner_html(result), *labels]

    examples = decision_examples(res.dataset)
    command = gr.Textbox(
        label="Command",
        placeholder="e.g. transfer $500 from my savings to my checking account",
        lines=1,
        max_lines=4,
        max_length=MAX_INPUT_CHARS,
        autofocus=True,
        elem_id="command",
        submit_btn="Classify",
        info="Press Enter to classify. English and Arabic.",
    )
    banner = gr.HTML(banner_html(empty_classification()), elem_id="decision-banner")
    labels: dict[str, gr.Label] = {}
    with gr.Row():
        for i, criterion in enumerate(CRITERIA):
            with gr.Column(min_width=300, elem_id=f"criterion-{i}", elem_classes="lma-criterion"):
                gr.Markdown(f"#### {criterion.name}")
                with gr.Row():
                    for attribute in criterion.attributes:
                        labels[attribute.name] = gr.Label(
                            label=ATTRIBUTE_TITLES[attribute.name],
                            num_top_classes=len(attribute.values),
                            show_heading=False,
                            min_width=140,
                            elem_id=f"attr-{attribute.name}",
                        )
    outputs = [banner, *(labels[name] for name in ATTRIBUTE_NAMES)]
    command.submit(
        classify_ui,
        command,
        outputs,
        api_visibility="private",
        show_progress="minimal",
        concurrency_id="classify",
    )
    if examples:
        gr.Examples(
            examples=[[text] for _, text in examples],
            example_labels=[f"{DECISION_TITLES[d]} · {text}" for d, text in examples],
            inputs=command,
            outputs=outputs,
            fn=classify_ui,
            run_on_click=True,
            cache_examples=False,
            examples_per_page=len(examples),
            label=f"Examples from the {res.dataset.example_split} split, by expected decision",
            api_visibility="private",
        )
    else:
        gr.Markdown(f"_No examples: {res.dataset.note}_")
