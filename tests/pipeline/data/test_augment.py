import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from pipeline.core.schema import ATTRIBUTE_NAMES
from pipeline.data.augment import (
    AugmentConfig,
    AugmentError,
    ParaphraseConfig,
    augment_frame,
    parse_paraphrases,
    random_deletion,
    random_swap,
    typos,
)
from pipeline.llm.client import ProviderConfig


@pytest.fixture()
def frame(seed_sample: pd.DataFrame) -> pd.DataFrame:
    return seed_sample.head(40).reset_index(drop=True)


def test_same_seed_gives_the_same_rows(frame):
    config = AugmentConfig(copies=2, seed=7)
    first, second = augment_frame(frame, config), augment_frame(frame, config)
    pd.testing.assert_frame_equal(first.frame, second.frame)
    other = augment_frame(frame, AugmentConfig(copies=2, seed=8))
    assert other.frame["text"].tolist() != first.frame["text"].tolist()


def test_variants_do_not_depend_on_row_order(frame):
    config = AugmentConfig(copies=1, seed=3)
    forward = augment_frame(frame, config).frame
    backward = augment_frame(frame.iloc[::-1].reset_index(drop=True), config).frame
    assert dict(zip(forward["id"], forward["text"])) == dict(zip(backward["id"], backward["text"]))


def test_augmented_rows_keep_labels_and_follow_the_originals(frame):
    result = augment_frame(frame, AugmentConfig(copies=1, seed=0))
    out = result.frame
    pd.testing.assert_frame_equal(out.head(len(frame)), frame)
    added = out.iloc[len(frame):]
    assert len(added) == sum(result.added.values()) > 0
    by_id = frame.set_index("id")
    for _, row in added.iterrows():
        source_id, suffix = row["id"].split("#")
        kind = row["source"].removeprefix("augment:")
        assert suffix == f"{kind}0"
        assert row["text"] != by_id.loc[source_id, "text"]
        for name in ATTRIBUTE_NAMES + ("lang", "domain"):
            assert row[name] == by_id.loc[source_id, name]


def test_fraction_selects_a_share_of_rows(frame):
    assert len(augment_frame(frame, AugmentConfig(fraction=0.0)).frame) == len(frame)
    half = augment_frame(frame, AugmentConfig(fraction=0.5, copies=1)).frame
    assert 0 < len(half) - len(frame) < len(frame)


def test_deletion_keeps_negations_and_consent_words():
    text = "track her location without her knowing and do not tell anyone لا"
    out = random_deletion(text, 1.0, random.Random(0))
    assert out.split() == ["without", "not", "لا"]


def test_swap_keeps_every_word():
    text = "move the old invoices into the archive folder"
    out = random_swap(text, 2, random.Random(1))
    assert sorted(out.split()) == sorted(text.split())
    assert out != text


def test_typos_change_long_unprotected_words_only():
    text = "please archive my receipts not an email رتب الملفات"
    out = typos(text, 1.0, random.Random(2)).split()
    original = text.split()
    assert len(out) == len(original)
    for before, after in zip(original, out):
        if len(before) < 3 or before == "not":
            assert after == before
        else:
            assert after != before and abs(len(after) - len(before)) <= 1


def test_invalid_config_is_rejected():
    with pytest.raises(AugmentError, match="unknown augmentation kind"):
        AugmentConfig(kinds=("shuffle",))
    with pytest.raises(AugmentError, match="typo_p"):
        AugmentConfig(typo_p=1.5)


def test_parse_paraphrases_accepts_objects_lists_and_fences():
    assert parse_paraphrases('{"paraphrases": ["a b", "c d"]}', "x", 2) == ["a b", "c d"]
    assert parse_paraphrases('```json\n["a  b", "x", "a b", "e f"]\n```', "x", 3) == ["a b", "e f"]
    with pytest.raises(AugmentError, match="not JSON"):
        parse_paraphrases("Sure! Here you go", "x", 1)


class _ParaphraseHandler(BaseHTTPRequestHandler):
    """Answers chat completions with two paraphrases of the command in the prompt."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        command = prompt.rsplit("Command: ", 1)[1]
        self.server.prompts.append(command)
        if "bad" in command:
            content = "I cannot help with that."
        else:
            content = json.dumps({"paraphrases": [f"please {command}", f"{command} right away"]})
        payload = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def paraphrase_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ParaphraseHandler)
    server.prompts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_paraphrases_from_an_endpoint_are_added_and_cached(frame, paraphrase_server, tmp_path):
    rows = frame.head(3).copy()
    rows.loc[rows.index[2], "text"] = "a bad command"
    provider = ProviderConfig(
        model="para", base_url=f"http://127.0.0.1:{paraphrase_server.server_port}/v1", json_mode=False,
        max_retries=0,
    )
    config = AugmentConfig(
        copies=0, paraphrase=ParaphraseConfig(provider, copies=2, cache_file=tmp_path / "cache.jsonl")
    )
    result = augment_frame(rows, config)
    added = result.frame.iloc[len(rows):]
    first = rows["text"].iloc[0]
    assert result.added["paraphrase"] == 4
    assert added["text"].tolist()[:2] == [f"please {first}", f"{first} right away"]
    assert set(added["source"]) == {"augment:paraphrase"}
    # Answered texts are cached and not asked again; the unusable answer is asked again.
    assert len(paraphrase_server.prompts) == 3
    again = augment_frame(rows, config)
    pd.testing.assert_frame_equal(again.frame, result.frame)
    assert paraphrase_server.prompts[3:] == ["a bad command"]


def test_attack_forms_keep_the_command_readable_and_are_detected_as_such():
    from pipeline.core.text_forms import is_obfuscated
    from pipeline.data.augment import ATTACK_KINDS, augment_text
    from pipeline.model.modeling import load_tokenizer

    text = "Please delete every file in my Downloads folder before Friday"
    config = AugmentConfig(obfuscation_p=0.5)
    variants = {kind: augment_text(text, kind, config, random.Random(3), "en") for kind in ATTACK_KINDS}
    assert all(v != text for v in variants.values())
    # obfuscated spelling is what the corpus' adversarial detector looks for
    for kind in ("leet", "homoglyph", "emoji"):
        assert is_obfuscated(variants[kind]), variants[kind]
    assert "Please delete every file in my Downloads folder before Friday" in variants["wrapper"]
    # homoglyphs are look-alikes: folded back to Latin they give the command again
    fold = {"\u0430": "a", "\u0441": "c", "\u0435": "e", "\u043e": "o", "\u03bf": "o", "\u0440": "p", "\u0445": "x",
            "\u0443": "y", "\u0456": "i", "\u0458": "j", "\u0455": "s", "\u0391": "A", "\u0410": "A", "\u0392": "B",
            "\u0412": "B", "\u0395": "E", "\u0415": "E", "\u0397": "H", "\u041d": "H", "\u039a": "K", "\u041a": "K",
            "\u039c": "M", "\u041c": "M", "\u039f": "O", "\u041e": "O", "\u03a1": "P", "\u0420": "P", "\u03a4": "T",
            "\u0422": "T", "\u03a7": "X", "\u0425": "X"}
    assert "".join(fold.get(ch, ch) for ch in variants["homoglyph"]) == text
    tokenizer = load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    assert tokenizer.tokenize(variants["casing"].replace(" ", "")) != [] and variants["casing"].lower().replace(" ", "") == text.lower().replace(" ", "")


def test_arabic_commands_get_arabic_wrappers():
    from pipeline.data.augment import wrapper

    out = wrapper("احذف كل الملفات من مجلد التنزيلات", "ar", random.Random(0))
    assert "احذف كل الملفات من مجلد التنزيلات" in out and out != "احذف كل الملفات من مجلد التنزيلات"
    assert not any("a" <= ch.lower() <= "z" for ch in out)
