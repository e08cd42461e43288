"""How a classification looks: the decision banner, the criterion cards' titles and values, and
the Space's CSS."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Sequence

from pipeline.core.decision import decide
from pipeline.core.schema import ATTRIBUTE_NAMES, BINARY_ATTRIBUTES, RISK, YES
from space.classifier import Classification

if TYPE_CHECKING:
    import gradio as gr

DECISION_TITLES = {
    "allow": "Allow",
    "confirm": "Confirm first",
    "cannot_do": "Cannot do",
    "block": "Block",
}
ATTRIBUTE_TITLES = {
    "feasible": "Feasible",
    "legal": "Legal",
    "ethical": "Ethical",
    "within_boundaries": "Within boundaries",
    "reversible": "Reversible",
    "risk": "Risk",
}
OUTPUT_TITLES = {
    **{name: ATTRIBUTE_TITLES[name].lower() for name in BINARY_ATTRIBUTES},
    "risk_at_least_medium": "risk (medium or higher)",
    "risk_high": "risk (high)",
}



def typed_json(schema: object, **kwargs: Any) -> "gr.JSON":
    """A `gr.JSON` whose API schema is the type `schema` (a TypedDict, a list of them...):
    `gr.JSON` itself documents "any valid json", which `view_api()` shows as `Any`."""
    import gradio as gr
    from gradio_client.utils import python_type_to_json_schema

    component = gr.JSON(**kwargs)
    info = python_type_to_json_schema(schema)
    component.api_info = lambda: info  # type: ignore[method-assign]
    return component


# ---------------------------------------------------------------------------------------------
# Rendering a classification


def _uncertain_text(outputs: Sequence[str]) -> str:
    names = ", ".join(OUTPUT_TITLES.get(o, o) for o in outputs)
    return f"Uncertain: review. The model is close to its threshold on {names}."


def banner_html(result: Classification) -> str:
    """The decision banner: the decision, the reasons in words, uncertainty and notices."""
    esc = html.escape
    notices = "".join(f'<div class="lma-notice">{esc(n)}</div>' for n in result.notices)
    if result.decision is None:
        return f'<div class="lma-banner lma-empty" data-decision="none">{notices}</div>'
    reasons = "".join(f'<div class="lma-reason">{esc(r)}</div>' for r in result.reasons)
    uncertain = ""
    if result.uncertain:
        text = esc(_uncertain_text(result.uncertain_outputs))
        uncertain = f'<div class="lma-uncertain" data-uncertain="yes">{text}</div>'
    decision = esc(result.decision)
    return (
        f'<div class="lma-banner lma-{decision}" data-decision="{decision}">'
        f'<div class="lma-kicker">Decision</div>'
        f'<div class="lma-title">{esc(DECISION_TITLES[result.decision])}</div>'
        f"{reasons}{uncertain}{notices}</div>"
    )


ATTRIBUTE_OUTPUTS = {name: (name,) for name in BINARY_ATTRIBUTES} | {
    RISK.name: ("risk_at_least_medium", "risk_high")
}


def label_title(name: str, result: Classification) -> str:
    """A criterion label's title with the decided value, e.g. `Legal: no (uncertain)`."""
    title = ATTRIBUTE_TITLES[name]
    if result.decision is None:
        return title
    uncertain = set(ATTRIBUTE_OUTPUTS[name]) & set(result.uncertain_outputs)
    return f"{title}: {result.labels[name]}" + (" (uncertain)" if uncertain else "")


# Every attribute at its permissive value: the policy allows these labels.
_PERMISSIVE = {**{name: YES for name in BINARY_ATTRIBUTES}, RISK.name: RISK.values[0]}


def attribute_outcome(name: str, value: str) -> str:
    """The decision one attribute's value leads to on its own (the policy applied with every
    other attribute permissive): `Legal: no` is block, `Feasible: no` cannot_do, `Risk: high`
    confirm, a permissive value allow."""
    return decide({**_PERMISSIVE, name: value}).value


def card_classes(name: str, result: Classification) -> list[str]:
    """CSS classes of a criterion card: coloured by the decision its value leads to."""
    if result.decision is None:
        return ["lma-card"]
    return ["lma-card", f"lma-card-{attribute_outcome(name, result.labels[name])}"]


def label_values(result: Classification) -> list[dict[str, float] | None]:
    """Confidences for the six `gr.Label`s, in `ATTRIBUTE_NAMES` order (None clears one)."""
    if result.decision is None:
        return [None] * len(ATTRIBUTE_NAMES)
    return [dict(result.probabilities[name]) for name in ATTRIBUTE_NAMES]


# ---------------------------------------------------------------------------------------------
# The app

CSS = """
.lma-banner { border: 2px solid; border-radius: 12px; padding: 14px 18px; }
.lma-kicker { font-size: .8rem; text-transform: uppercase; letter-spacing: .08em; opacity: .75; }
.lma-title { font-size: 1.6rem; font-weight: 700; line-height: 1.2; margin-bottom: 4px; }
.lma-reason { font-size: 1.05rem; }
.lma-uncertain { margin-top: 8px; font-weight: 600; }
.lma-notice { margin-top: 6px; font-size: .92rem; }
.lma-allow { background: #e7f6ec; border-color: #1a7f37; color: #0b3d1c; }
.lma-confirm { background: #fff4d6; border-color: #bf8700; color: #4d3500; }
.lma-cannot_do { background: #eceff4; border-color: #57606a; color: #24292f; }
.lma-block { background: #ffebe9; border-color: #cf222e; color: #67060c; }
.lma-empty { border-style: dashed; border-color: var(--border-color-primary);
  color: var(--body-text-color-subdued); }
#command textarea { unicode-bidi: plaintext; text-align: start; font-size: 1.05rem; }
#command .submit-button { background: var(--button-primary-background-fill);
  color: var(--button-primary-text-color); border-radius: var(--button-large-radius);
  padding: 0 18px; font-weight: 600; min-height: 40px; }
#command .submit-button:hover { background: var(--button-primary-background-fill-hover); }
#decision-banner .html-container { padding: 0; }
#batch-table td { unicode-bidi: plaintext; }
.lma-criterion h4 { margin: 0 0 4px 0; }
.lma-footer { font-size: .85rem; opacity: .8; }
.lma-loaded { font-size: .85rem; }
.lma-report table { display: block; overflow-x: auto; }
.lma-report th, .lma-report td { min-width: 5em; word-break: normal; overflow-wrap: normal; }
.lma-card { border-left-width: 6px !important; border-left-style: solid !important; }
.lma-card-allow { border-left-color: #1a7f37 !important; background: #f3fbf5 !important; }
.lma-card-confirm { border-left-color: #bf8700 !important; background: #fffaeb !important; }
.lma-card-cannot_do { border-left-color: #57606a !important; background: #f4f6f8 !important; }
.lma-card-block { border-left-color: #cf222e !important; background: #fff3f2 !important; }
.lma-table table { width: 100%; border-collapse: collapse; font-size: .92rem; }
.lma-table th, .lma-table td { overflow-wrap: anywhere; padding: 4px 6px; text-align: start;
  border-bottom: 1px solid var(--border-color-primary); }
.lma-table .lma-num { text-align: end; font-variant-numeric: tabular-nums; white-space: nowrap; }
"""

