"""Text augmentation of the training split: random word deletion and swap, a typo model, the
forms attackers use to slip a command past a gate (leetspeak, homoglyphs, case and spacing,
emoji, benign wrappers) and, when an OpenAI-compatible endpoint is configured, LLM paraphrases.

Augmented rows keep their source row's labels, language and domain; they get the id
`<id>#<kind><k>` and the source `augment:<kind>`. Every random choice is seeded by
`(seed, row id, copy)`, so the output does not depend on row order or on other rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from pipeline.core.schema import ID, MAX_WORDS, SOURCE, TEXT
from pipeline.llm.client import ProviderConfig

log = logging.getLogger(__name__)

DELETION, SWAP, TYPO, PARAPHRASE = "deletion", "swap", "typo", "paraphrase"
LEET, HOMOGLYPH, CASING, EMOJI, WRAPPER = "leet", "homoglyph", "casing", "emoji", "wrapper"
# Obfuscations that keep a command's meaning (and so its labels) for a reader.
ATTACK_KINDS: tuple[str, ...] = (LEET, HOMOGLYPH, CASING, EMOJI, WRAPPER)
LOCAL_KINDS: tuple[str, ...] = (DELETION, SWAP, TYPO) + ATTACK_KINDS

# Latin letters and the digits or symbols written for them.
_LEET_MAP: dict[str, str] = {"a": "4@", "e": "3", "i": "1!", "o": "0", "s": "5$", "t": "7", "l": "1", "g": "9", "b": "8"}
# Latin letters and their Cyrillic or Greek look-alikes.
_HOMOGLYPHS: dict[str, str] = {
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e\u03bf", "p": "\u0440", "x": "\u0445", "y": "\u0443",
    "i": "\u0456", "j": "\u0458", "s": "\u0455", "A": "\u0391\u0410", "B": "\u0392\u0412", "E": "\u0395\u0415",
    "H": "\u0397\u041d", "K": "\u039a\u041a", "M": "\u039c\u041c", "O": "\u039f\u041e", "P": "\u03a1\u0420",
    "T": "\u03a4\u0422", "X": "\u03a7\u0425",
}
_EMOJI = ("\U0001F642", "\U0001F64F", "\U0001F60A", "\U0001F44D", "\U0001F525", "\u2728", "\U0001F680", "\U0001F4AF", "\U0001F60E", "\u2764\ufe0f")
# Wrappers a user puts around a command without changing what it asks.
_WRAPPERS: dict[str, tuple[str, ...]] = {
    "en": (
        "hey, quick one: {}", "Hi! {} Thanks a lot.", "{} thx", "ok so {}", "Morning. {}", "{} - when you get a sec",
        "Next task on my list: {}", "Can you handle this for me? {}", "{} Cheers!", "Please and thank you: {}",
    ),
    "ar": (
        "مرحبا، {}", "{} شكرا", "لو سمحت: {}", "{} مشكور", "صباح الخير، {}", "طلب سريع: {}", "{} الله يعطيك العافية",
    ),
}

# Words whose loss flips a label ("track her location *without* her knowing", "do *not*
# send"): deletion and the typo model never touch them.
PROTECTED_WORDS: frozenset[str] = frozenset(
    """not no never without dont don't doesn't didn't isn't aren't won't can't cannot nobody
    nothing none secretly unless except only consent permission
    لا لم لن ما مش مو بدون دون غير بلا ليس ولا إلا الا سرا سراً""".split()
)

# Neighbouring keys on a QWERTY keyboard, for substitution typos in Latin script.
_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_QWERTY_ROWS):
    for _c, _ch in enumerate(_row):
        near = [_row[j] for j in (_c - 1, _c + 1) if 0 <= j < len(_row)]
        for _other in (_r - 1, _r + 1):
            if 0 <= _other < len(_QWERTY_ROWS):
                near += [_QWERTY_ROWS[_other][j] for j in (_c - 1, _c, _c + 1) if 0 <= j < len(_QWERTY_ROWS[_other])]
        _NEIGHBOURS[_ch] = "".join(near)


class AugmentError(ValueError):
    """The augmentation config is invalid or the paraphrase endpoint answered badly."""


@dataclass(frozen=True)
class ParaphraseConfig:
    """An OpenAI-compatible chat model that writes paraphrases; answers are cached."""

    provider: ProviderConfig  # endpoint, model, key variable, rate limits, retries
    copies: int = 1  # paraphrases asked per text
    cache_file: Path | None = None  # JSON lines {"key", "paraphrases"}; reused across runs
    seed: int = 0  # retry jitter


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run on the training split and how strongly."""

    kinds: tuple[str, ...] = LOCAL_KINDS  # local kinds to draw from, one per copy
    copies: int = 1  # local augmented copies per selected row (0 = none)
    fraction: float = 1.0  # share of rows selected for local copies (chosen by seeded hash)
    deletion_p: float = 0.1  # probability of deleting each unprotected word
    swap_n: int = 1  # word pairs swapped
    typo_p: float = 0.1  # probability of one typo in each unprotected word of 3+ characters
    obfuscation_p: float = 0.3  # share of letters leetspeak and homoglyphs replace
    paraphrase: ParaphraseConfig | None = None  # LLM paraphrases when set
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in LOCAL_KINDS]
        if unknown:
            raise AugmentError(f"unknown augmentation kind(s) {unknown}; known: {list(LOCAL_KINDS)}")
        if self.copies < 0 or self.swap_n < 0:
            raise AugmentError("copies and swap_n must be >= 0")
        for name in ("deletion_p", "typo_p", "fraction", "obfuscation_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise AugmentError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class AugmentResult:
    """The augmented frame (originals first) and how many rows each kind added."""

    frame: pd.DataFrame
    added: dict[str, int] = field(default_factory=dict)


def _words(text: str) -> list[str]:
    return text.split()


def _protected(word: str) -> bool:
    return re.sub(r"[^\w']", "", word.lower()) in PROTECTED_WORDS


def random_deletion(text: str, p: float, rng: random.Random) -> str:
    """Delete each unprotected word with probability `p`; at least one word is kept."""
    words = _words(text)
    kept = [w for w in words if _protected(w) or rng.random() >= p]
    if not kept:
        kept = [rng.choice(words)]
    return " ".join(kept)


def random_swap(text: str, n: int, rng: random.Random) -> str:
    """Swap `n` random pairs of word positions."""
    words = _words(text)
    if len(words) < 2:
        return text
    for _ in range(n):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


def _typo_in_word(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    ch = word[i]
    edits = ["drop", "double", "transpose"]
    if ch.lower() in _NEIGHBOURS:
        edits.append("neighbour")
    edit = rng.choice(edits)
    if edit == "drop":
        return word[:i] + word[i + 1 :]
    if edit == "double":
        return word[:i] + ch + word[i:]
    if edit == "transpose":
        if i == len(word) - 1:
            i -= 1
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    sub = rng.choice(_NEIGHBOURS[ch.lower()])
    return word[:i] + (sub.upper() if ch.isupper() else sub) + word[i + 1 :]


def typos(text: str, p: float, rng: random.Random) -> str:
    """With probability `p` per word of 3+ characters, one keyboard typo: a dropped, doubled or
    transposed character, or (Latin letters) a neighbouring key."""
    out = []
    for word in _words(text):
        if len(word) >= 3 and not _protected(word) and rng.random() < p:
            word = _typo_in_word(word, rng)
        out.append(word)
    return " ".join(out)


def leetspeak(text: str, p: float, rng: random.Random) -> str:
    """Each Latin letter with a leetspeak form becomes one with probability `p`."""
    return "".join(rng.choice(_LEET_MAP[ch.lower()]) if ch.lower() in _LEET_MAP and rng.random() < p else ch for ch in text)


def homoglyphs(text: str, p: float, rng: random.Random) -> str:
    """Each Latin letter with a Cyrillic or Greek look-alike becomes one with probability `p`."""
    return "".join(rng.choice(_HOMOGLYPHS[ch]) if ch in _HOMOGLYPHS and rng.random() < p else ch for ch in text)


def casing(text: str, rng: random.Random) -> str:
    """ALL CAPS, all lower case, alternating case or one word spaced out letter by letter."""
    style = rng.randrange(4)
    if style == 0:
        return text.upper()
    if style == 1:
        return text.lower()
    if style == 2:
        return "".join(ch.upper() if i % 2 else ch.lower() for i, ch in enumerate(text))
    words = _words(text)
    long_words = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long_words:
        return text.upper()
    i = rng.choice(long_words)
    words[i] = " ".join(words[i])
    return " ".join(words)


def emoji(text: str, rng: random.Random) -> str:
    """One to three emoji at the end, the start or between words."""
    words = _words(text)
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.choice([0, len(words), rng.randrange(len(words) + 1)]), rng.choice(_EMOJI))
    return " ".join(words)


def wrapper(text: str, lang: str, rng: random.Random) -> str:
    """The command inside a greeting, a thanks or a lead-in that does not change what it asks."""
    return rng.choice(_WRAPPERS.get(lang, _WRAPPERS["en"])).format(text)


def row_rng(seed: int, row_id: str, copy: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\0{row_id}\0{copy}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def augment_text(text: str, kind: str, config: AugmentConfig, rng: random.Random, lang: str = "en") -> str:
    """One augmented variant of `text` by the local augmentation `kind`."""
    if kind == LEET:
        return leetspeak(text, config.obfuscation_p, rng)
    if kind == HOMOGLYPH:
        return homoglyphs(text, config.obfuscation_p, rng)
    if kind == CASING:
        return casing(text, rng)
    if kind == EMOJI:
        return emoji(text, rng)
    if kind == WRAPPER:
        return wrapper(text, lang, rng)
    if kind == DELETION:
        return random_deletion(text, config.deletion_p, rng)
    if kind == SWAP:
        return random_swap(text, config.swap_n, rng)
    if kind == TYPO:
        return typos(text, config.typo_p, rng)
    raise AugmentError(f"unknown augmentation kind {kind!r}")


def _copy_row(row: dict, text: str, kind: str, k: int) -> dict:
    out = dict(row)
    out[TEXT] = text
    out[ID] = f"{row[ID]}#{kind}{k}"
    out[SOURCE] = f"augment:{kind}"
    return out


def augment_frame(frame: pd.DataFrame, config: AugmentConfig) -> AugmentResult:
    """The training frame with augmented copies appended; the input frame is not changed.

    A copy identical to its source text (a one-word command, an unlucky draw) is not added.
    """
    added = {kind: 0 for kind in config.kinds}
    new_rows: list[dict] = []
    records = frame.to_dict("records")
    if config.copies and config.kinds:
        for row in records:
            if row_rng(config.seed, str(row[ID]), -1).random() >= config.fraction:
                continue
            text = str(row[TEXT])
            seen = {text}
            for k in range(config.copies):
                rng = row_rng(config.seed, str(row[ID]), k)
                kind = rng.choice(config.kinds)
                variant = augment_text(text, kind, config, rng, str(row.get("lang", "en")))
                if variant in seen:
                    continue
                seen.add(variant)
                new_rows.append(_copy_row(row, variant, kind, k))
                added[kind] += 1
    if config.paraphrase is not None and config.paraphrase.copies > 0:
        paraphrases = paraphrase_texts([str(r[TEXT]) for r in records], config.paraphrase)
        added[PARAPHRASE] = 0
        for row, variants in zip(records, paraphrases):
            for k, variant in enumerate(variants):
                new_rows.append(_copy_row(row, variant, PARAPHRASE, k))
                added[PARAPHRASE] += 1
    augmented = pd.DataFrame.from_records(new_rows, columns=frame.columns) if new_rows else frame.iloc[:0]
    out = pd.concat([frame, augmented], ignore_index=True)
    log.info("augmentation added %s rows to %d", added, len(frame))
    return AugmentResult(out, added)


# ---------------------------------------------------------------------------------------------
# LLM paraphrases

_PARAPHRASE_PROMPT = (
    "Rewrite the following command that a user gives to a computer-using AI agent in {n} "
    "different ways. Keep its exact meaning, intent, language and every detail that matters "
    "(who, what, consent, negations); vary wording and sentence structure like different real "
    'users would. Answer with a JSON object {{"paraphrases": [{n} strings]}} and nothing else.'
    "\n\nCommand: {text}"
)


def _cache_key(config: ParaphraseConfig, text: str) -> str:
    return hashlib.sha256(f"{config.provider.model}\0{config.copies}\0{text}".encode()).hexdigest()


def _read_cache(path: Path | None) -> dict[str, list[str]]:
    if path is None or not path.is_file():
        return {}
    cache: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            cache[entry["key"]] = list(entry["paraphrases"])
        except (json.JSONDecodeError, KeyError, TypeError):
            log.warning("%s:%d: unreadable cache line skipped (asked again)", path, number)
    return cache


def parse_paraphrases(answer: str, source: str, n: int) -> list[str]:
    """The valid paraphrases in an LLM answer: `{"paraphrases": [...]}` or a bare JSON list (a
    Markdown fence is accepted); each kept one is non-empty, within the corpus word limits and
    different from `source`. Raises `AugmentError` when the answer is not such JSON."""
    body = answer.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1).strip()
    try:
        items = json.loads(body)
    except json.JSONDecodeError as exc:
        raise AugmentError(f"paraphrase answer is not JSON: {answer[:200]!r}") from exc
    if isinstance(items, dict):
        items = items.get("paraphrases")
    if not isinstance(items, list):
        raise AugmentError(f"paraphrase answer has no list of paraphrases: {answer[:200]!r}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            continue
        text = " ".join(item.split())
        if text and text != source and text not in out and 1 <= len(text.split()) <= MAX_WORDS:
            out.append(text)
    return out[:n]


async def _paraphrase_missing(todo: list[str], config: ParaphraseConfig, cache: dict[str, list[str]]) -> None:
    from tqdm.auto import tqdm

    from pipeline.llm.client import ChatClient, LLMError, resolve_endpoint

    client = ChatClient(resolve_endpoint(config.provider))
    progress = tqdm(total=len(todo), desc="paraphrase", unit="text")

    async def one(text: str) -> None:
        prompt = _PARAPHRASE_PROMPT.format(n=config.copies, text=text)
        try:
            completion = await client.complete([{"role": "user", "content": prompt}])
            variants = parse_paraphrases(completion.text, text, config.copies)
        except (LLMError, AugmentError) as exc:
            # Not cached: the next run asks again.
            log.warning("no paraphrase for %r: %s", text[:80], exc)
            progress.update()
            return
        key = _cache_key(config, text)
        cache[key] = variants
        if config.cache_file is not None:
            with config.cache_file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": key, "paraphrases": variants}, ensure_ascii=False) + "\n")
        progress.update()

    try:
        await asyncio.gather(*(one(t) for t in todo))
    finally:
        progress.close()
        await client.aclose()


def paraphrase_texts(texts: Sequence[str], config: ParaphraseConfig) -> list[list[str]]:
    """Up to `config.copies` paraphrases per text from the endpoint (rate limits, concurrency
    and retries from `pipeline.llm.client`). Answers in the cache file are reused and new ones are
    appended as they arrive, so an interrupted run loses nothing; a text whose request failed
    gets no paraphrase this run."""
    cache = _read_cache(config.cache_file)
    if config.cache_file is not None:
        config.cache_file.parent.mkdir(parents=True, exist_ok=True)
    todo = [t for t in dict.fromkeys(texts) if _cache_key(config, t) not in cache]
    if todo:
        asyncio.run(_paraphrase_missing(todo, config, cache))
    return [list(cache.get(_cache_key(config, t), [])) for t in texts]
