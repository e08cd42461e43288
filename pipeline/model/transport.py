"""Move a fine-tuned classifier between hosts through a narrow pipe.

A model trained with `train.freeze_embeddings` differs from its backbone everywhere except the
word-embedding matrix, which is most of its bytes (113,608 x 384 for the pruned
multilingual-e5-small). `pack_model` writes every other tensor as fp16 safetensors shards of a
bounded size, plus the folder's small files (config, tokenizer) and a manifest with the fixed
matrix's shape and SHA-256; `unpack_model` puts the matrix back from the backbone the receiving
host converts itself, checks the digest, and writes an ordinary `from_pretrained` folder in the
tensors' original dtypes. The fp16 rounding is the only change (about 1e-3 relative per weight).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "transport.json"
SHARD_PREFIX = "w"
DEFAULT_FIXED_KEY = "bert.embeddings.word_embeddings.weight"
# The files of a saved classifier besides its weights; anything else in the folder is left behind.
SMALL_FILE_LIMIT = 8 << 20


class TransportError(ValueError):
    """A pack that cannot be unpacked: a missing shard, a fixed matrix that differs, a bad manifest."""


@dataclass(frozen=True)
class PackResult:
    out_dir: Path
    shards: list[str]
    n_tensors: int
    bytes_written: int
    fixed_key: str


def tensor_sha256(array: np.ndarray) -> str:
    """SHA-256 of a tensor's bytes as contiguous little-endian fp32."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()


def _load(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise TransportError(f"{path}: weights file not found")
    return load_file(str(path))


def pack_model(model_dir: str | Path, out_dir: str | Path, fixed_key: str = DEFAULT_FIXED_KEY,
               max_shard_bytes: int = 16 << 20) -> PackResult:
    """Write `model_dir` without its fixed `fixed_key` matrix, floats as fp16, into `out_dir`."""
    from safetensors.numpy import save_file

    source, out = Path(model_dir), Path(out_dir)
    tensors = _load(source / WEIGHTS_FILE)
    if fixed_key not in tensors:
        raise TransportError(f"{source / WEIGHTS_FILE}: no tensor {fixed_key!r} to leave behind")
    out.mkdir(parents=True, exist_ok=True)
    fixed = tensors.pop(fixed_key)
    dtypes = {name: str(array.dtype) for name, array in tensors.items()}
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in sorted(tensors):
        array = tensors[name]
        small = array.astype(np.float16) if np.issubdtype(array.dtype, np.floating) else array
        if shards[-1] and size + small.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = np.ascontiguousarray(small)
        size += small.nbytes
    names = []
    written = 0
    for i, shard in enumerate(shards):
        name = f"{SHARD_PREFIX}{i}.safetensors"
        save_file(shard, str(out / name))
        names.append(name)
        written += (out / name).stat().st_size
    small_files = []
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name != WEIGHTS_FILE and path.stat().st_size <= SMALL_FILE_LIMIT:
            shutil.copy2(path, out / path.name)
            small_files.append(path.name)
            written += path.stat().st_size
    manifest = {
        "fixed_key": fixed_key,
        "fixed_shape": list(fixed.shape),
        "fixed_sha256": tensor_sha256(fixed),
        "shards": names,
        "files": small_files,
        "dtypes": dtypes,
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return PackResult(out, names, len(tensors), written, fixed_key)


def unpack_model(pack_dir: str | Path, embeddings_from: str | Path, out_dir: str | Path) -> Path:
    """An ordinary model folder from a pack and the folder (the converted backbone) holding the
    same fixed matrix; `TransportError` when a shard is missing or the matrix differs."""
    from safetensors.numpy import save_file

    pack, out = Path(pack_dir), Path(out_dir)
    try:
        manifest = json.loads((pack / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TransportError(f"{pack / MANIFEST_FILE}: unreadable manifest ({exc})") from exc
    key = manifest["fixed_key"]
    backbone = _load(Path(embeddings_from) / WEIGHTS_FILE)
    # The backbone folder holds a bare encoder (`embeddings.`) or a classifier (`bert.embeddings.`).
    candidates = [name for name in (key, key.split(".", 1)[-1]) if name in backbone]
    if not candidates:
        raise TransportError(f"{embeddings_from}: no tensor matching {key!r}")
    fixed = backbone[candidates[0]].astype(np.float32)
    if list(fixed.shape) != manifest["fixed_shape"] or tensor_sha256(fixed) != manifest["fixed_sha256"]:
        raise TransportError(
            f"{embeddings_from}: {candidates[0]} {list(fixed.shape)} is not the matrix the model was "
            f"trained with ({manifest['fixed_shape']}, sha256 {manifest['fixed_sha256'][:12]})")
    tensors: dict[str, np.ndarray] = {key: fixed}
    for name in manifest["shards"]:
        tensors.update(_load(pack / name))
    missing = sorted(set(manifest["dtypes"]) - set(tensors))
    if missing:
        raise TransportError(f"{pack}: {len(missing)} tensor(s) missing, e.g. {missing[0]}")
    for name, dtype in manifest["dtypes"].items():
        tensors[name] = np.ascontiguousarray(tensors[name].astype(dtype))
    out.mkdir(parents=True, exist_ok=True)
    for name in manifest["files"]:
        shutil.copy2(pack / name, out / name)
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    return out
