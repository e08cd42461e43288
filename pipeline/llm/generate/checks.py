"""Checking a generator's reply: every command against the schema and the request (labels,
domain, language, length, duplicates), never dropped silently; row ids from the normalized
text."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping

from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.jobs.records import GeneratedRow, Rejection

# Reasons a generated command (or a whole response) is rejected.
REASONS: dict[str, str] = {
    "bad_json": "the response is not the JSON object asked for",
    "missing_field": "an item lacks text, labels or one of the six attributes",
    "bad_value": "a value is not allowed by the schema",
    "wrong_labels": "the labels differ from the labels asked for",
    "wrong_domain": "the item names another domain than the one asked for",
    "wrong_language": "the text is not in the language asked for",
    "length": "the text is too short or too long",
    "duplicate": "the text repeats a corpus row or another generated command",
    "too_many": "more commands than asked for",
    "unknown_id": "a labeler answered for an id it was not asked about",
    "missing_answer": "a labeler gave no answer for an id it was asked about",
}
ARABIC_RANGES = (
    (0x0600, 0x06FF),
    (0x0750, 0x077F),
    (0x08A0, 0x08FF),
    (0xFB50, 0xFDFF),
    (0xFE70, 0xFEFF),
)


def normalize_text(text: str) -> str:
    """Case- and spacing-insensitive form of a command, for duplicate checks and ids."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def row_id(lang: str, text: str) -> str:
    """`gen-<hash>` of the language and normalized text: equal commands get equal ids."""
    digest = hashlib.sha1(f"{lang}\n{normalize_text(text)}".encode("utf-8")).hexdigest()
    return f"gen-{digest[:12]}"


def arabic_share(text: str) -> float:
    """Share of Arabic-script letters among the letters of `text`."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    arabic = sum(any(lo <= ord(ch) <= hi for lo, hi in ARABIC_RANGES) for ch in letters)
    return arabic / len(letters)


@dataclass
class ParsedCommands:
    """The accepted rows of one response and every rejection (with reasons)."""

    rows: list[GeneratedRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rejections:
            out[r.reason] = out.get(r.reason, 0) + 1
        return out


def parse_json_object(content: str) -> Any:
    """JSON from a reply, allowing one surrounding Markdown code fence; raises ValueError."""
    text = content.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    if fence:
        text = fence.group(1)
    return json.loads(text)


def parse_commands(
    content: str,
    spec: Mapping[str, Any],
    source: str,
    config: GenerateConfig,
    known_texts: set[str] | frozenset[str] = frozenset(),
) -> ParsedCommands:
    """Check a generator reply against the schema and the request; never drop silently."""
    out = ParsedCommands()
    try:
        data = parse_json_object(content)
    except ValueError as exc:
        out.rejections.append(Rejection("bad_json", str(exc), content[:2000]))
        return out
    items = data.get("commands") if isinstance(data, dict) else data
    if not isinstance(items, list):
        detail = "expected an object with a `commands` list"
        out.rejections.append(Rejection("bad_json", detail, content[:2000]))
        return out
    wanted = spec["labels"]
    seen: set[str] = set()
    for index, item in enumerate(items):
        text = item.get("text") if isinstance(item, dict) else None
        shown = text if isinstance(text, str) else json.dumps(item, ensure_ascii=False)[:500]

        def reject(reason: str, detail: str) -> None:
            out.rejections.append(Rejection(reason, detail, shown, item=index))

        if index >= int(spec["n"]):
            reject("too_many", f"asked for {spec['n']}")
            continue
        if not isinstance(item, dict):
            reject("missing_field", "item is not an object")
            continue
        if not isinstance(text, str) or not text.strip():
            reject("missing_field", "no `text`")
            continue
        if "\n" in text.strip():
            reject("bad_value", "text spans several lines")
            continue
        given = item.get("labels")
        if not isinstance(given, dict):
            reject("missing_field", "no `labels` object")
            continue
        missing = [name for name in ATTRIBUTE_NAMES if name not in given]
        if missing:
            reject("missing_field", f"labels lack {', '.join(missing)}")
            continue
        values = {name: str(given[name]).strip().lower() for name in ATTRIBUTE_NAMES}
        bad = [n for n in ATTRIBUTE_NAMES if values[n] not in ATTRIBUTES_BY_NAME[n].values]
        if bad:
            reject("bad_value", ", ".join(f"{n}={given[n]!r}" for n in bad))
            continue
        wrong = [n for n in ATTRIBUTE_NAMES if values[n] != wanted[n]]
        if wrong:
            reject(
                "wrong_labels", ", ".join(f"{n}: got {values[n]}, asked {wanted[n]}" for n in wrong)
            )
            continue
        if "domain" in item and item["domain"] != spec["domain"]:
            reject("wrong_domain", f"got {item['domain']!r}, asked {spec['domain']!r}")
            continue
        if "lang" in item and item["lang"] != spec["lang"]:
            reject("wrong_language", f"got {item['lang']!r}, asked {spec['lang']!r}")
            continue
        text = text.strip()
        words = len(text.split())
        if not config.min_words <= words <= config.max_words:
            reject("length", f"{words} words, need {config.min_words}-{config.max_words}")
            continue
        share = arabic_share(text)
        if (spec["lang"] == "ar" and share < 0.5) or (spec["lang"] == "en" and share > 0.1):
            reject("wrong_language", f"{share:.0%} Arabic letters for lang={spec['lang']}")
            continue
        key = normalize_text(text)
        if key in known_texts or key in seen:
            reject(
                "duplicate",
                "same text as a corpus row" if key in known_texts else "repeated in reply",
            )
            continue
        seen.add(key)
        out.rows.append(
            GeneratedRow(
                row_id(spec["lang"], text), text, spec["lang"], spec["domain"], values, source
            )
        )
    return out
