"""The Classify tab: one command in, the decision banner and the three criteria's cards out,
with examples labelled with what the loaded model decides for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.schema import ATTRIBUTE_NAMES, CRITERIA
from space.classifier import MAX_INPUT_CHARS, empty_classification
from space.fairness import SINGLE_CONCURRENCY, SINGLE_GROUP
from space.render import (
    ATTRIBUTE_TITLES,
    DECISION_TITLES,
    banner_html,
    card_classes,
    label_title,
    label_values,
)

if TYPE_CHECKING:
    from space.resources import SpaceResources

# After a result, bring the banner into view when it is off-screen (on a phone an example chip
# sits below the fold) without moving a page that already shows it.
SHOW_BANNER_JS = """() => {
  const banner = document.querySelector('#decision-banner');
  if (!banner) return;
  const box = banner.getBoundingClientRect();
  if (box.top < 0 || box.top > window.innerHeight - 80) {
    banner.scrollIntoView({block: 'start', behavior: 'instant'});
  }
}"""
# Focus the command box on load where a keyboard does not cover half the screen; on a phone
# focusing would open the on-screen keyboard and scroll the page.
FOCUS_ON_WIDE_SCREENS_JS = """() => {
  if (window.matchMedia('(min-width: 768px) and (pointer: fine)').matches) {
    document.querySelector('#command textarea')?.focus({preventScroll: true});
  }
}"""


def classify_tab(res: SpaceResources) -> None:
    """The tab's components and events, inside the caller's `gr.Tab`."""
    import gradio as gr

    classifier = res.classifier

    def classify_ui(command: str | None):
        result = classifier.classify(command)
        labels = [
            gr.Label(
                value=value,
                label=label_title(name, result),
                elem_classes=card_classes(name, result),
            )
            for name, value in zip(ATTRIBUTE_NAMES, label_values(result))
        ]
        return [banner_html(result), *labels]

    command = gr.Textbox(
        label="Command",
        placeholder="e.g. transfer $500 from my savings to my checking account",
        lines=1,
        max_lines=4,
        max_length=MAX_INPUT_CHARS,
        elem_id="command",
        submit_btn="Classify",
        info="Press Enter to classify. English and Arabic.",
    )
    examples = res.examples
    if examples.examples:
        chips = gr.Examples(
            examples=[[e.text] for e in examples.examples],
            example_labels=[f"{DECISION_TITLES[e.decision]} · {e.text}" for e in examples.examples],
            inputs=command,
            examples_per_page=len(examples.examples),
            label=f"Examples from the {examples.split} split, labelled with the model's decision",
            api_visibility="private",
            elem_id="examples",
        )
    else:
        chips = None
        gr.Markdown(f"_No examples: {res.dataset.note}_")
    if examples.note:
        gr.Markdown(f"_{examples.note}_", elem_id="examples-note")
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
                            elem_classes=["lma-card"],
                        )
    outputs = [banner, *(labels[name] for name in ATTRIBUTE_NAMES)]
    triggers = [command.submit] + ([chips.load_input_event.then] if chips is not None else [])
    for trigger in triggers:
        trigger(
            classify_ui,
            command,
            outputs,
            api_visibility="private",
            show_progress="minimal",
            concurrency_id=SINGLE_GROUP,
            concurrency_limit=SINGLE_CONCURRENCY,
        ).then(None, js=SHOW_BANNER_JS)
