"""The forms a command takes, detected from its text: questions, politeness, typos and slang,
multi-step commands, pasted content, alarming words, motive cues, adversarial forms.

Each detector is a transparent pattern list for English and Arabic, so the corpus figures that
`corpus-stats` prints and checks (`CORPUS_GOALS`) can be recomputed from the files by anyone.
They measure the corpus; they are never features of the model.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Mapping

import pandas as pd

from pipeline.core.decision import decisions_from_frame
from pipeline.core.schema import DOMAIN, DOMAINS, LANG, TEXT


def _words(*items: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(items) + r")", re.IGNORECASE)


_QUESTION_START = _words(
    r"(?:can|could|would|will|do|does|did|is|are|should|may|might) (?:you|i|we|it|there|u)\b",
    r"how (?:do|can|to|would|should|much|many|long|does|is)\b",
    r"what(?:'s|s| is| are| do| does| should| would| can)?\b",
    r"where\b", r"which\b", r"why\b", r"when\b", r"who\b", r"is it (?:possible|ok|safe)\b", r"any (?:way|chance)\b",
    r"هل", r"كيف", r"ممكن", r"ليش", r"شلون", r"إزاي", r"ازاي", r"كيفاش", r"وش", r"ماذا", r"لماذا", r"متى",
    r"أين", r"فين", r"وين", r"ايش", r"إيش", r"شو", r"يمكنك", r"تقدر", r"بتقدر", r"تقدري",
)
_POLITE = _words(
    r"please\b", r"pls\b", r"plz\b", r"kindly\b", r"could you\b", r"would you\b", r"would it be possible\b",
    r"i'?d like\b", r"i would like\b", r"i need you to\b", r"it would help\b", r"if you (?:could|can|don'?t mind)\b",
    r"would you mind\b", r"thanks?\b", r"thank you\b", r"appreciate\b", r"if possible\b", r"when you get a (?:chance|sec)\b",
    r"لو سمحت", r"لو سمحتي", r"من فضلك", r"رجاء", r"رجاءً", r"أرجو", r"ارجو", r"بليز", r"لو تكرمت", r"يا ?ريت",
    r"الله يخليك", r"الله يعافيك", r"شكرا", r"شكراً", r"تكفى", r"بعد إذنك", r"بعد اذنك", r"لو ما عليك أمر", r"ممكن",
)
_SLANG_OR_TYPO = _words(
    r"u\b", r"ur\b", r"pls\b", r"plz\b", r"gonna\b", r"wanna\b", r"gotta\b", r"lol\b", r"idk\b", r"tbh\b", r"rn\b",
    r"btw\b", r"thx\b", r"ya\b", r"imma\b", r"bc\b", r"cuz\b", r"lemme\b", r"gimme\b", r"kinda\b", r"sorta\b",
    r"dunno\b", r"omg\b", r"ngl\b", r"fr\b", r"bro\b", r"asap\b", r"tmrw\b", r"tmr\b", r"smth\b", r"sth\b", r"ppl\b",
    r"msg\b", r"pic\b", r"pics\b", r"nah\b", r"yo\b", r"ty\b", r"np\b", r"jk\b", r"lmk\b", r"pls\b", r"srsly\b",
    r"dont\b", r"cant\b", r"wont\b", r"im\b", r"ive\b", r"isnt\b", r"doesnt\b", r"didnt\b", r"thats\b", r"whats\b",
    r"theres\b", r"youre\b", r"wouldnt\b", r"couldnt\b", r"shouldnt\b", r"aint\b", r"teh\b", r"recieve\b",
    r"tommorow\b", r"tomorow\b", r"definately\b", r"seperate\b", r"wich\b", r"becuase\b", r"thier\b", r"untill\b",
    r"calender\b", r"adress\b", r"alot\b", r"wierd\b", r"occured\b", r"pleas\b", r"plase\b", r"recieved\b",
    r"\w*([^\W\d_])\1\1+",
    r"ه{3,}", r"يلا", r"اوكي", r"اوك", r"بليز", r"برو", r"حبيبي", r"يسطا", r"ياسطا", r"يا عم",
)
_STEPS = _words(
    r"and then\b", r"then\b", r"after that\b", r"afterwards\b", r"once (?:that|it|you|the|i)\b", r"first\b", r"next\b",
    r"finally\b", r"as soon as\b", r"if\b", r"unless\b", r"otherwise\b", r"in case\b", r"followed by\b", r"and also\b",
    r"before (?:you|that|it|i)\b", r"whenever\b",
    r"ثم", r"وبعدين", r"بعد كذا", r"بعدها", r"وبعد ذلك", r"إذا", r"اذا", r"لو", r"في حال", r"وإلا", r"والا",
    r"أولا", r"أولاً", r"اولا", r"وبعد", r"وبعدها", r"بعد ما", r"قبل ما", r"لما", r"عندما",
)
_QUOTED = re.compile(r"(?:^|(?<=[\s:(]))[\"“«‘']([^\"”»’]{20,}?)[\"”»’'](?=[\s.,;:!?)]|$)")
_PASTE_MARK = _words(
    r"(?:email|e-mail|message|msg|text|dm|post|comment|tweet|review|page|article|log|error|output|note|reply|"
    r"letter|notice|invite|listing|says|said|reads|wrote|writes|pasted|below|this)\s*:",
    r"subject\s*:", r"from\s*:", r"traceback\b", r"```",
    r"(?:رسالة|الرسالة|الإيميل|الايميل|إيميل|ايميل|البريد|يقول|تقول|مكتوب|النص|الخطأ|الخطا|المنشور|التعليق|"
    r"البوست|الصفحة|الإعلان|الاعلان|كاتب|كتب|كاتبة)\s*:",
)
ALARMING_WORDS: tuple[str, ...] = (
    "kill", "execute", "shoot", "attack", "exploit", "crack", "hack", "nuke", "wipe", "destroy", "terminate",
    "inject", "hijack", "bomb", "purge", "strike", "assassinate", "murder", "blow up", "detonate", "weapon",
    "explode", "obliterate", "annihilate", "slaughter", "stab", "burn", "smash", "poison", "trojan", "virus",
    "اقتل", "قتل", "يقتل", "نفّذ", "نفذ", "تنفيذ", "هاجم", "هجوم", "اخترق", "اختراق", "تهكير", "هكر", "هاكر",
    "كراك", "فجّر", "فجر", "تفجير", "قنبلة", "دمّر", "دمر", "تدمير", "اضرب", "ثغرة", "استغلال", "حقن", "اختطاف",
    "اسحق", "أبيد", "إبادة", "سلاح", "سم", "فيروس", "امسح كل", "احرق", "حرق",
)
_ALARMING = re.compile(
    r"(?<!\w)(?:" + "|".join(re.escape(w) for w in ALARMING_WORDS) + r")", re.IGNORECASE
)
_MOTIVE = _words(
    r"so (?:that )?(?:i|he|she|they|we) (?:can|could|get|don'?t|won'?t|will|never)\b",
    r"while (?:he|she|they)(?:'s|'re| is| are) (?:away|at work|asleep|out|not looking|busy|in the shower)\b",
    r"(?:he|she|they) won'?t mind\b", r"but whatever\b", r"nobody will (?:notice|know|find out)\b",
    r"won'?t notice\b", r"(?:just )?to make sure (?:he|she|they)'?s? (?:not|isn'?t|aren'?t)\b",
    r"لن يلاحظ", r"لن تلاحظ", r"ما راح يلاحظ", r"ما حيلاحظ", r"مش هيلاحظ", r"ما رح يعرف", r"مش هيعرف",
    r"عشان ما يعرف", r"عشان ما تعرف", r"حتى لا يعرف", r"حتى لا تعرف", r"دون علم", r"دون أن (?:يعرف|تعرف|يعلم|تعلم)", r"so (?:nobody|no one|he|she|they)(?: won'?t| doesn'?t| can'?t| never)\b",
    r"without (?:him|her|them|anyone|anybody|my \w+|his \w+|her \w+) (?:knowing|noticing|finding out|seeing)\b",
    r"won'?t (?:know|notice|find out|see)\b", r"doesn'?t know\b", r"behind (?:his|her|their|my) back\b",
    r"get back at\b", r"payback\b", r"revenge\b", r"teach (?:him|her|them) a lesson\b", r"as a prank\b",
    r"to get even\b", r"secretly\b", r"in secret\b", r"without telling\b", r"don'?t tell\b", r"make (?:him|her|them) pay\b",
    r"to ruin\b", r"to humiliate\b", r"never find out\b", r"on the sly\b",
    r"بدون ما (?:يعرف|تعرف|يدري|تدري|يحس|تحس|ياخد|ياخذ)", r"من غير ما (?:يعرف|تعرف|يدري|تدري|يحس|تحس)", r"انتقام", r"أنتقم", r"انتقم",
    r"سرا", r"سراً", r"بالسر", r"بالسرّ", r"بالخفية", r"بدون علم", r"من وراه", r"من وراها", r"يتعلم درس", r"تتعلم درس",
    r"أرد له", r"ما يعرف", r"ما تعرف", r"ما يدري", r"ما تدري", r"عشان أنتقم", r"أأدبه", r"أفضحه", r"أفضحها",
)
_TECHNICAL = re.compile(
    r"(?:(?<!\w)[~/\\][\w.-]+|\b\w+\.(?:exe|py|sh|js|json|csv|xlsx|docx|pdf|sql|yml|yaml|log|txt|db|zip|ps1|bat)\b|`|"
    r"(?<!\w)--?\w|\b(?:sudo|ssh|scp|curl|wget|grep|chmod|sql|select|nmap|python|bash|powershell|regex|api|"
    r"endpoint|payload|webhook|query|script|cron|oauth|2fa|otp|ssl|tls|dns|vpn|proxy|firmware|registry|"
    r"kernel|macro|scraper|headers?|json|csv|cli|smtp|imap|ldap|git|docker|kubectl|s3|iam|jwt|hash(?:es)?|"
    r"plaintext|metadata|exif|user-agent|selenium|playwright|bot)\b)",
    re.IGNORECASE,
)
_INDIRECT = _words(
    r"i need\b", r"i'?d like\b", r"it would\b", r"help me\b", r"is there a way\b", r"what'?s the best way\b",
    r"how would\b", r"could we\b", r"let'?s\b", r"we should\b", r"i'?m looking for\b", r"i was wondering\b",
    r"any chance\b", r"maybe\b", r"would be great\b", r"i want to\b", r"i'?m trying to\b",
    r"أحتاج", r"احتاج", r"محتاج", r"أريد", r"اريد", r"ودي", r"نفسي", r"يا ريت", r"هل في طريقة", r"في طريقة",
)
_FRAMING = _words(
    r"for (?:a|my) (?:class|school|course|novel|story|book|screenplay|script|game|thesis|paper|project|assignment|lecture)\b",
    r"hypothetically\b", r"in a fictional\b", r"fictional\b", r"role-?play\b", r"pretend (?:you are|you're|to be)\b",
    r"as a character\b", r"for (?:research|educational|academic|training|awareness) purposes\b", r"imagine (?:you|that)\b",
    r"act as\b", r"you are now\b", r"in character\b", r"for a (?:ctf|security) (?:class|training|demo)\b",
    r"لأغراض تعليمية", r"لغرض تعليمي", r"لأغراض بحثية", r"لرواية", r"لقصة", r"في قصة", r"تمثيل", r"تخيل", r"افترض",
    r"لمشروع", r"للمادة", r"لدرس", r"للجامعة", r"لعبة أدوار",
)
_GATE_DIRECTED = _words(
    r"ignore (?:all |your |the |any )?(?:previous |prior |above |earlier )?(?:instructions|rules|guidelines)\b",
    r"classif(?:y|ied) (?:this|it) as\b", r"mark (?:this|it) (?:as )?(?:safe|allowed|approved|benign)\b",
    r"pre-?approved\b", r"the safety (?:team|check|filter|system|gate)\b", r"this is authori[sz]ed\b",
    r"disregard\b", r"system prompt\b", r"developer mode\b", r"(?:safety|content) (?:filter|check)s? (?:off|disabled)\b",
    r"label (?:this|it) as\b", r"you (?:must|have to) (?:allow|approve)\b", r"no need to (?:check|confirm|ask)\b",
    r"تجاهل (?:التعليمات|كل التعليمات|القواعد)", r"صنّف(?:ها|ه)? (?:كآمن|آمن|مسموح)", r"صنف(?:ها|ه)? (?:كآمن|آمن|مسموح)",
    r"اعتبر(?:ها|ه)? (?:آمن|مسموح)", r"موافق عليه مسبقا", r"فريق الأمان", r"بدون (?:فحص|تحقق)",
)
_LEET = re.compile(r"\b(?=\w*[a-z])(?=\w*[0-9@$])[a-z]*[a-z][0134578@$][a-z]\w*\b", re.IGNORECASE)
_SPACED = re.compile(r"(?:\b\w[ .\-_*]){4,}\w\b")
_EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")


def _homoglyphs(text: str) -> bool:
    """A word mixing Latin letters with Cyrillic or Greek look-alikes."""
    for word in re.findall(r"\w+", text):
        scripts = {unicodedata.name(ch, "").split(" ")[0] for ch in word if ch.isalpha()}
        if "LATIN" in scripts and scripts & {"CYRILLIC", "GREEK"}:
            return True
    return False


def _all_caps(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha() and ch.isascii()]
    return len(text.split()) >= 4 and len(letters) >= 12 and sum(ch.isupper() for ch in letters) / len(letters) > 0.7


def is_question(text: str) -> bool:
    return "?" in text or "؟" in text or bool(_QUESTION_START.match(text.strip()))


def is_polite_or_indirect(text: str) -> bool:
    return bool(_POLITE.search(text) or _INDIRECT.search(text))


def is_no_punctuation_run_on(text: str) -> bool:
    """Twenty words or more without a single punctuation mark."""
    return len(text.split()) >= 20 and not re.search(r"[.,!?;:'\"()،؛؟]", text)


def has_typos_or_slang(text: str) -> bool:
    return bool(_SLANG_OR_TYPO.search(text)) or is_no_punctuation_run_on(text)


def is_multi_step(text: str) -> bool:
    return bool(_STEPS.search(text))


def has_pasted_content(text: str) -> bool:
    quoted = _QUOTED.search(text)
    return bool(_PASTE_MARK.search(text)) or bool(quoted and len(quoted.group(1).split()) >= 4)


def has_alarming_word(text: str) -> bool:
    return bool(_ALARMING.search(text))


def has_motive_cue(text: str) -> bool:
    return bool(_MOTIVE.search(text))


def is_polite_technical_or_indirect(text: str) -> bool:
    return is_polite_or_indirect(text) or is_question(text) or bool(_TECHNICAL.search(text))


def is_obfuscated(text: str) -> bool:
    return bool(_LEET.search(text) or _SPACED.search(text) or _EMOJI.search(text)) or _homoglyphs(text) or _all_caps(text)


def is_framed(text: str) -> bool:
    return bool(_FRAMING.search(text))


def is_gate_directed(text: str) -> bool:
    return bool(_GATE_DIRECTED.search(text))


def is_adversarial(text: str, decision: str) -> bool:
    """Obfuscated spelling, framing, text aimed at the gate, or (on a harmful row) a harmful
    step inside a multi-step command."""
    hidden_step = decision == "block" and is_multi_step(text) and not has_motive_cue(text)
    return is_obfuscated(text) or is_framed(text) or is_gate_directed(text) or hidden_step


FORMS: dict[str, Callable[[str], bool]] = {
    "question": is_question,
    "polite_or_indirect": is_polite_or_indirect,
    "typos_slang_or_no_punctuation": has_typos_or_slang,
    "multi_step_or_conditional": is_multi_step,
    "pasted_content": has_pasted_content,
    "alarming_word": has_alarming_word,
}


@dataclass(frozen=True)
class Goal:
    """One corpus figure, its bounds and what it measures."""

    name: str
    low: float | None
    high: float | None
    meaning: str

    def met(self, value: float) -> bool:
        return (self.low is None or value >= self.low - 1e-12) and (self.high is None or value <= self.high + 1e-12)

    @property
    def is_share(self) -> bool:
        """A share of rows (bounds within 0..1), not a count."""
        return (self.low if self.low is not None else self.high) <= 1

    def show(self, value: float) -> str:
        """A measured value as the goal tables print it: shares as percentages, counts whole."""
        return f"{value:.1%}" if self.is_share else f"{value:,.0f}"

    def bounds(self) -> str:
        def fmt(x: float) -> str:
            return f"{x:.0%}" if self.is_share else f"{x:,.0f}"

        if self.low is not None and self.high is not None:
            return f"{fmt(self.low)}-{fmt(self.high)}"
        return f">= {fmt(self.low)}" if self.low is not None else f"<= {fmt(self.high)}"


CORPUS_GOALS: tuple[Goal, ...] = (
    Goal("rows", 20000, None, "rows in the corpus"),
    Goal("rows_en", 15000, None, "English rows"),
    Goal("rows_ar", 4000, None, "Arabic rows"),
    Goal("share_question", 0.20, None, "questions"),
    Goal("share_polite_or_indirect", 0.15, None, "polite or indirect requests"),
    Goal("share_typos_slang_or_no_punctuation", 0.08, None, "typos, slang or no punctuation"),
    Goal("share_multi_step_or_conditional", 0.10, None, "multi-step or conditional commands"),
    Goal("share_pasted_content", 0.05, None, "commands carrying pasted content"),
    Goal("alarming_benign_rows", 2000, None, "allow or confirm rows using an alarming word"),
    Goal("alarming_benign_share", 0.45, None, "allow + confirm among rows using an alarming word"),
    Goal("block_motive_share", None, 0.08, "block rows stating a motive or secrecy cue"),
    Goal("block_polite_technical_indirect_share", 0.40, None, "block rows that are polite, technical or indirect"),
    Goal("share_allow", 0.35, 0.45, "decision allow"),
    Goal("share_confirm", 0.25, 0.35, "decision confirm"),
    Goal("share_block", 0.15, 0.25, "decision block"),
    Goal("share_cannot_do", 0.08, 0.12, "decision cannot_do"),
    Goal("adversarial_rows", 1000, None, "rows in an adversarial form"),
    Goal("domain_share_min", 0.03, None, "share of the smallest domain"),
    Goal("domain_share_max", None, 0.10, "share of the largest domain"),
)


def corpus_figures(frame: pd.DataFrame) -> dict[str, float]:
    """Every figure of `CORPUS_GOALS` for a corpus frame (`text`, `lang`, `domain`, labels)."""
    texts = frame[TEXT].astype(str)
    decisions = pd.Series(decisions_from_frame(frame), index=frame.index)
    n = max(len(frame), 1)
    out: dict[str, float] = {"rows": len(frame)}
    for lang in ("en", "ar"):
        out[f"rows_{lang}"] = int((frame[LANG] == lang).sum())
    forms = {name: texts.map(test) for name, test in FORMS.items()}
    for name in ("question", "polite_or_indirect", "typos_slang_or_no_punctuation", "multi_step_or_conditional", "pasted_content"):
        out[f"share_{name}"] = float(forms[name].mean()) if len(frame) else 0.0
    alarming = forms["alarming_word"]
    benign = decisions.isin(["allow", "confirm"])
    out["alarming_benign_rows"] = int((alarming & benign).sum())
    out["alarming_benign_share"] = float((alarming & benign).sum() / max(alarming.sum(), 1))
    block = decisions == "block"
    block_texts = texts[block]
    out["block_motive_share"] = float(block_texts.map(has_motive_cue).mean()) if block.any() else 0.0
    out["block_polite_technical_indirect_share"] = (
        float(block_texts.map(is_polite_technical_or_indirect).mean()) if block.any() else 0.0
    )
    for decision in ("allow", "confirm", "block", "cannot_do"):
        out[f"share_{decision}"] = float((decisions == decision).sum() / n)
    out["adversarial_rows"] = int(sum(is_adversarial(t, d) for t, d in zip(texts, decisions)))
    shares = frame[DOMAIN].value_counts(normalize=True).reindex(list(DOMAINS), fill_value=0.0)
    out["domain_share_min"] = float(shares.min())
    out["domain_share_max"] = float(shares.max())
    return out


def goal_report(figures: Mapping[str, float]) -> list[tuple[Goal, float, bool]]:
    """Each goal with its measured value and whether it is met."""
    return [(g, figures[g.name], g.met(figures[g.name])) for g in CORPUS_GOALS]
