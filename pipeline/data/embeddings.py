"""Normalized sentence embeddings with a sentence-transformers model, fast and cached on disk.

`TextEmbedder.encode` tokenizes with the model's Rust tokenizer (in worker processes for large
inputs), sorts by token length (little padding), runs the model's own modules (transformer, pooling, normalize)
batch by batch and returns L2-normalized float32 vectors in input order. Tokenizing the next
chunk overlaps the model's work on the current one. `python -m benchmarks.bench_dedup
--reference-rows N` times this against plain `SentenceTransformer.encode` on the machine at hand.

`EmbeddingCache` stores vectors under `<cache>/embeddings/<model key>/` keyed by a hash of the
text, so a re-run embeds only texts it has not seen with that model.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import queue
import re
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from pipeline.core.config import resolve_model
from pipeline.core.host import usable_cores

log = logging.getLogger(__name__)

DIGEST_BYTES = 16


def text_digest(text: str) -> bytes:
    """The cache key of one text (BLAKE2b, 16 bytes, of its UTF-8 bytes)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


# Tokenizer of a worker process (`tokenizer_processes`): built once by `_init_worker`.
_WORKER_TOKENIZER = None


def _init_worker(tokenizer_json: str, max_length: int) -> None:
    global _WORKER_TOKENIZER
    from tokenizers import Tokenizer

    _WORKER_TOKENIZER = Tokenizer.from_str(tokenizer_json)
    _WORKER_TOKENIZER.no_padding()
    _WORKER_TOKENIZER.enable_truncation(max_length=max_length)


def _token_arrays(encodings) -> tuple[np.ndarray, np.ndarray]:
    """(flat ids, lengths) of a list of `tokenizers.Encoding`."""
    ids = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def _tokenize_in_worker(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return _token_arrays(_WORKER_TOKENIZER.encode_batch_fast(texts))


def auto_device() -> str:
    """`cuda` when a GPU is present, then `mps`, else `cpu`."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


CACHE_VERSION = "v1"  # bump when the way vectors are computed changes


def model_key(model_name_or_path: str) -> str:
    """A folder name for one model's cache: a readable slug plus a hash of the model reference.
    Known without loading the model, so a fully cached run never loads it."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name_or_path.rstrip("/").split("/")[-1])[:48]
    digest = hashlib.blake2b(
        f"{model_name_or_path}|normalized|{CACHE_VERSION}".encode(), digest_size=6
    ).hexdigest()
    return f"{slug}-{digest}"


def _split_keys(keys: np.ndarray) -> list[bytes]:
    raw = keys.tobytes()
    return [raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)]


class EmbeddingCache:
    """Append-only store of normalized vectors for one model, keyed by `text_digest`.

    Each `put` writes one new part file (`part-NNNNN.npz`, written to a temporary name and
    renamed), so an interrupted run loses at most the part it was writing.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._index: dict[bytes, int] = {}
        self._vectors: list[np.ndarray] = []
        self._rows = 0
        self._parts = 0
        if self.directory.is_dir():
            for part in sorted(self.directory.glob("part-*.npz")):
                with np.load(part) as data:
                    keys, vectors = data["keys"], data["vectors"]
                for i, key in enumerate(_split_keys(keys)):
                    self._index.setdefault(key, self._rows + i)
                self._vectors.append(vectors.astype(np.float32, copy=False))
                self._rows += len(keys)
                self._parts += 1
        self._matrix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._index

    def get(self, digests: Sequence[bytes]) -> np.ndarray:
        """The cached vectors of `digests` (every one must be cached), in order."""
        if self._matrix is None:
            self._matrix = np.concatenate(self._vectors) if self._vectors else np.zeros((0, 0), np.float32)
        return self._matrix[[self._index[d] for d in digests]]

    def put(self, digests: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store new vectors (one part file)."""
        if not len(digests):
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # Raw uint8 rows: numpy's fixed-width bytes dtype would drop trailing zero bytes.
        keys = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, DIGEST_BYTES)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        final = self.directory / f"part-{self._parts:05d}.npz"
        tmp = final.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        os.replace(tmp, final)
        for i, key in enumerate(digests):
            self._index.setdefault(key, self._rows + i)
        self._vectors.append(vectors)
        self._rows += len(keys)
        self._parts += 1
        self._matrix = None


class TextEmbedder:
    """A sentence-transformers model that turns texts into normalized float32 vectors.

    `device="auto"` picks the GPU when present; `batch_size=0` picks 1024 on a GPU, 64 on CPU;
    `dtype="auto"` is float16 on a GPU, float32 on CPU. `cache_dir` (optional) enables the disk
    cache; `stats` counts texts embedded and texts served from the cache. From
    `process_min_texts` texts on, tokenizing runs in `tokenizer_processes` worker processes (the
    Rust tokenizer holds the GIL, so threads do not help); `close()` ends them.
    """

    def __init__(
        self,
        model_name_or_path: str,
        device: str = "auto",
        batch_size: int = 0,
        cache_dir: str | Path | None = None,
        dtype: str = "auto",
        tokenizer_processes: int = 0,
        process_min_texts: int = 50_000,
        chunk_size: int = 16384,
    ):
        self.model_name = model_name_or_path
        self.device = auto_device() if device == "auto" else device
        on_gpu = self.device.startswith("cuda")
        self.batch_size = batch_size or (1024 if on_gpu else 64)
        self.dtype = ("float16" if on_gpu else "float32") if dtype == "auto" else dtype
        self.tokenizer_processes = tokenizer_processes or max(1, min(16, usable_cores() - 1))
        self.process_min_texts = process_min_texts
        self.chunk_size = chunk_size
        self._pool = None
        self._cache_root = Path(cache_dir) if cache_dir is not None else None
        self._model = None
        self._backend = None
        self._cache: EmbeddingCache | None = None
        self.stats = {"embedded": 0, "cached": 0}

    # -- model ---------------------------------------------------------------------------------

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from sentence_transformers import SentenceTransformer
        from tokenizers import Tokenizer

        model = SentenceTransformer(resolve_model(self.model_name), device=self.device)
        if self.dtype == "float16":
            model = model.half()
        elif self.dtype == "bfloat16":
            model = model.to(torch.bfloat16)
        else:
            model = model.float()
        model.eval()
        tokenizer = model.tokenizer
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{self.model_name}: a text model with a fast (Rust) tokenizer is needed")
        # A private copy of the Rust tokenizer: truncation set here, no padding (done per batch).
        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        backend.no_padding()
        max_len = model.max_seq_length or tokenizer.model_max_length
        backend.enable_truncation(max_length=int(max_len))
        self._model = model
        self._backend = backend
        self._pad_id = tokenizer.pad_token_id or 0
        self._pad_left = tokenizer.padding_side == "left"
        self._max_len = int(max_len)
        self._wants_token_types = "token_type_ids" in tokenizer.model_input_names

    @property
    def dimension(self) -> int:
        self._load()
        dim = self._model.get_embedding_dimension()
        if dim is None:
            dim = self._encode_uncached_batches(["a"]).shape[1]
        return int(dim)

    @property
    def cache(self) -> EmbeddingCache | None:
        if self._cache is None and self._cache_root is not None:
            key = model_key(self.model_name)
            self._cache = EmbeddingCache(self._cache_root / "embeddings" / key)
        return self._cache

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """(n, dim) L2-normalized float32 vectors of `texts`, in order; cached ones are reused."""
        texts = [str(t) for t in texts]
        cache = self.cache
        if cache is None:
            self._load()
            vectors = self._encode_uncached(texts, progress)
            self.stats["embedded"] += len(texts)
            return vectors
        digests = [text_digest(t) for t in texts]
        missing: dict[bytes, str] = {}
        for digest, text in zip(digests, texts):
            if digest not in cache and digest not in missing:
                missing[digest] = text
        if missing:
            log.info("embedding %d new text(s) with %s (%d cached)", len(missing), self.model_name, len(texts) - len(missing))
            self._load()
            cache.put(list(missing), self._encode_uncached(list(missing.values()), progress))
        self.stats["embedded"] += len(missing)
        self.stats["cached"] += len(texts) - len(missing)
        return cache.get(digests)

    def _tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of `texts` as one flat array plus per-text lengths, in this process."""
        return _token_arrays(self._backend.encode_batch_fast(texts))

    def _worker_pool(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the parent may hold CUDA and Rust thread pools.
            self._pool = ProcessPoolExecutor(
                self.tokenizer_processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self._backend.to_str(), self._max_len),
            )
        return self._pool

    def close(self) -> None:
        """End the tokenizer worker processes, if any were started."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _batches(self, texts: list[str]) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(positions, padded features) batches: chunks of texts in character-length order,
        then token-length order inside a chunk, padded to the batch's longest sequence."""
        order = np.argsort(np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)), kind="stable")
        chunks = [order[start : start + self.chunk_size] for start in range(0, len(order), self.chunk_size)]
        if self.tokenizer_processes > 1 and len(texts) >= self.process_min_texts:
            pool = self._worker_pool()
            futures = [pool.submit(_tokenize_in_worker, [texts[i] for i in chunk]) for chunk in chunks]
            tokenized = (future.result() for future in futures)
        else:
            tokenized = (self._tokenize([texts[i] for i in chunk]) for chunk in chunks)
        for chunk, (flat, lengths) in zip(chunks, tokenized):
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            by_length = np.argsort(lengths, kind="stable")
            for b in range(0, len(by_length), self.batch_size):
                members = by_length[b : b + self.batch_size]
                member_lengths = lengths[members]
                width = int(member_lengths.max())
                columns = np.arange(width)
                if self._pad_left:
                    mask = columns[None, :] >= (width - member_lengths)[:, None]
                else:
                    mask = columns[None, :] < member_lengths[:, None]
                # Gather each member's tokens in order: its offset plus 0..length-1, row by row.
                starts = np.repeat(offsets[members], member_lengths)
                within = np.arange(int(member_lengths.sum())) - np.repeat(np.cumsum(member_lengths) - member_lengths, member_lengths)
                input_ids = np.full((len(members), width), self._pad_id, dtype=np.int64)
                input_ids[mask] = flat[starts + within]
                features = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}
                if self._wants_token_types:
                    features["token_type_ids"] = np.zeros_like(input_ids)
                yield chunk[members], features

    def _encode_uncached(self, texts: list[str], progress: bool) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return self._encode_uncached_batches(texts, progress)

    def _encode_uncached_batches(self, texts: list[str], progress: bool = False) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        out: np.ndarray | None = None
        # Batches are made in a background thread so tokenizing overlaps the model's forward.
        ready: queue.Queue = queue.Queue(maxsize=8)
        failure: list[BaseException] = []

        def produce() -> None:
            try:
                for positions, features in self._batches(texts):
                    tensors = {k: torch.from_numpy(v) for k, v in features.items()}
                    ready.put((positions, tensors))
            except BaseException as exc:  # re-raised in the consuming thread
                failure.append(exc)
            finally:
                ready.put(None)

        producer = threading.Thread(target=produce, name="tokenize", daemon=True)
        producer.start()
        bar = tqdm(total=len(texts), desc="embed", unit="text", disable=not progress, leave=False)
        pending: list[tuple[np.ndarray, torch.Tensor]] = []
        with torch.inference_mode():
            while (item := ready.get()) is not None:
                positions, tensors = item
                features = {k: v.to(self.device, non_blocking=True) for k, v in tensors.items()}
                emb = self._model(features)["sentence_embedding"]
                emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
                pending.append((positions, emb))
                if out is None:
                    out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
                if len(pending) >= 16:
                    self._drain(pending, out)
                bar.update(len(positions))
            self._drain(pending, out)
        bar.close()
        producer.join()
        if failure:
            raise failure[0]
        return out

    @staticmethod
    def _drain(pending: list, out: np.ndarray) -> None:
        for positions, emb in pending:
            out[positions] = emb.cpu().numpy()
        pending.clear()
