"""The Space README (`SpaceCardData` for the Gradio app) and the Space's `app.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pipeline.core.schema import ATTRIBUTE_NAMES
from pipeline.hub.cards.checks import parse_card
from pipeline.hub.cards.format import policy_text, render_template
from pipeline.hub.cards.release import HubRepos, Release

SPACE_TEMPLATE = "space_readme.md"
SPACE_APP_TEMPLATE = "space_app.py.jinja"


def space_card_data(
    repos: HubRepos,
    license: str,
    title: str,
    emoji: str,
    color_from: str,
    color_to: str,
    short_description: str,
    sdk_version: str,
    python_version: str,
    tags: Sequence[str],
):
    """`SpaceCardData` for a Gradio Space running `app.py` with the model and the dataset."""
    from huggingface_hub import SpaceCardData

    return SpaceCardData(
        title=title,
        emoji=emoji,
        colorFrom=color_from,
        colorTo=color_to,
        sdk="gradio",
        sdk_version=sdk_version,
        python_version=python_version,
        app_file="app.py",
        pinned=False,
        license=license,
        short_description=short_description,
        models=[repos.model],
        datasets=[repos.dataset],
        tags=list(tags),
    )


def render_space_readme(card_data, repos: HubRepos, release: Release, api_snippet: str, folder: Path | None = None):
    """The Space README (`huggingface_hub.SpaceCard`), checked."""
    text = render_template(
        SPACE_TEMPLATE,
        card_data=card_data.to_yaml(),
        attribute_names=ATTRIBUTE_NAMES,
        title=card_data.title,
        repos=repos,
        release=release,
        policy=policy_text(),
        api_snippet=api_snippet.strip(),
    )
    return parse_card(text, "space", folder)


def render_space_app(repos: HubRepos) -> str:
    """The Space's `app.py`: defaults `MODEL_ID` / `DATASET_ID` to this release's repos and runs
    `space.app`."""
    return render_template(SPACE_APP_TEMPLATE, repos=repos)
