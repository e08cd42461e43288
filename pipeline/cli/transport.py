"""`python -m pipeline transport pack|unpack`: move a fine-tuned model whose word embeddings stayed
fixed through a narrow pipe (fp16 shards without the embedding matrix; `pipeline.model.transport`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.config import resolve_model
from pipeline.model.transport import DEFAULT_FIXED_KEY, TransportError, pack_model, unpack_model


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("source", type=Path, help="pack: the model folder; unpack: the pack folder")
    parser.add_argument("dest", type=Path, help="pack: the pack folder; unpack: the model folder")
    parser.add_argument("--fixed-key", default=DEFAULT_FIXED_KEY, help="pack: the tensor left behind")
    parser.add_argument("--max-shard-mib", type=int, default=16, help="pack: the largest shard")
    parser.add_argument(
        "--embeddings-from", default="intfloat/multilingual-e5-small",
        help="unpack: folder or Hub id of the backbone holding the fixed matrix (offline: converted here)")


def main(args: argparse.Namespace) -> int:
    try:
        if args.action == "pack":
            result = pack_model(args.source, args.dest, args.fixed_key, args.max_shard_mib << 20)
            print(f"packed {result.n_tensors} tensors into {len(result.shards)} shard(s), "
                  f"{result.bytes_written / 2**20:.1f} MiB: {result.out_dir}")
        else:
            out = unpack_model(args.source, resolve_model(args.embeddings_from), args.dest)
            print(f"unpacked into {out}")
    except TransportError as exc:
        raise SystemExit(f"error: {exc}") from exc
    return 0
