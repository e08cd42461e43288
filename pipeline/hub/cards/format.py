"""What every card shares: the templates of `hub_cards/`, the policy sentence, shares and
figures."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from pipeline.core import decision
from pipeline.core.config import REPO_ROOT

TEMPLATE_DIR = REPO_ROOT / "hub_cards"


@dataclass
class Figure:
    """A plot shown in a card: its caption and its path inside the repo."""

    caption: str
    path: str


def share(part: int, total: int) -> str:
    return f"{part / total:.1%}" if total else "n/a"


def docstring_paragraph(obj: Any, starts_with: str) -> str:
    """The paragraph of `obj`'s docstring that starts with `starts_with`, on one line."""
    doc = inspect.getdoc(obj) or ""
    for paragraph in doc.split("\n\n"):
        if paragraph.strip().startswith(starts_with):
            return " ".join(paragraph.split())
    raise ValueError(f"no paragraph starting with {starts_with!r} in the docstring of {obj!r}")


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_template(name: str, **context: Any) -> str:
    """Render one template of `hub_cards/` (unknown variables are errors, not blanks)."""
    return _environment().get_template(name).render(**context)


def policy_text() -> str:
    """The decision policy, as `pipeline.core.decision` states it (its first sentence)."""
    paragraph = docstring_paragraph(decision, "Policy:").removeprefix("Policy:").strip()
    return paragraph.split(". ", 1)[0].rstrip(".") + "."
