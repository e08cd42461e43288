"""`stage`: write the three Hub repos as folders, exactly as they will be published.

- `build/hub/dataset`: the split stage's `data/*.parquet` plus the dataset card (`README.md`) and
  the data report (`reports/`: `data.json`, `data.md`, the figures the card shows);
- `build/hub/model`: `build/model` (safetensors, tokenizer, config with `id2label` and
  `decision_thresholds`), its ONNX export (`onnx/`), the model card and the evaluation and
  training reports with their figures (`reports/`);
- `build/hub/space`: `app.py` (a thin entry that runs `space.app` on this release's repos),
  `requirements.txt` (every third-party module the app imports, pinned at the installed
  version), `README.md` with the Space YAML (`sdk_version` is the installed Gradio) and the
  `space` and `pipeline` modules the app imports.

Cards are filled from the reports (`pipeline.hub.cards`); nothing is typed by hand. The data hash
(SHA-256 over the dataset's data files) goes into the cards and `build/reports/stage.json`, which
`publish` checks before uploading. The model and Space folders are built beside the old ones and
swapped in only when complete, so a failed run leaves the previous staging intact.
"""

from __future__ import annotations

import ast
import importlib.metadata
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

import pandas as pd

from pipeline import __version__
from pipeline.core.config import REPO_ROOT, BuildLayout, ConfigError, setting
from pipeline.core.decision import CONFIG_KEY, Thresholds
from pipeline.core.io import StageInputError, read_json, write_json
from pipeline.core.schema import ATTRIBUTES
from pipeline.data.split import SPLITS
from pipeline.hub.cards.dataset import DataReports, DatasetFacts, languages_present, render_dataset_card
from pipeline.hub.cards.format import Figure
from pipeline.hub.cards.model import ModelReports, render_model_card
from pipeline.hub.cards.release import HubRepos, Release
from pipeline.hub.cards.space import render_space_app, render_space_readme, space_card_data
from pipeline.hub.manifest import (
    CARD,
    DATA_DIR,
    MANIFEST,
    StagedFolder,
    StageResult,
    data_hash,
    folder_hashes,
    staged_files,
)
from pipeline.model.onnx_export import TOLERANCES as ONNX_TOLERANCES, OnnxExportConfig, OnnxParityError, export_onnx
from pipeline.report.eval_report import MODEL_KEY

log = logging.getLogger(__name__)

REPORTS_DIR = "reports"
SPACE_ENTRY = "space.app"  # the module the Space runs; its imports decide what is copied
SPACE_REQUIREMENTS = REPO_ROOT / "space" / "requirements.txt"  # maintained with space/app.py


@dataclass
class StageConfig:
    """The `[stage]` table of a preset."""

    license: str = setting("apache-2.0", "Hub license id of the model and the Space (the code's licence)")
    dataset_license: str = setting("cc-by-4.0", "Hub license id of the dataset")
    dataset_pretty_name: str = setting("LM-Action commands", "dataset card title and `pretty_name`")
    model_pretty_name: str = setting("LM-Action task classifier", "model card title")
    space_title: str = setting("LM-Action gate", "Space title")
    space_emoji: str = setting("🛡️", "Space emoji")
    space_color_from: str = setting("indigo", "Space thumbnail gradient start (a Hub colour name)")
    space_color_to: str = setting("green", "Space thumbnail gradient end")
    space_short_description: str = setting(
        "Should an AI agent act on this command?", "Space short description, at most 60 characters"
    )
    tags: list[str] = setting(["agents", "safety", "guardrails", "multilingual"], "Hub tags of the three repos")
    onnx: bool = setting(True, "export onnx/model.onnx into the staged model")
    onnx_quantize: bool = setting(True, "also onnx/model_quantized.onnx (dynamic int8)")
    onnx_int8_fp32_nodes: list[str] = setting(
        list(OnnxExportConfig.fp32_nodes),
        "regular expressions of graph nodes model_quantized.onnx keeps in fp32 (each must match a node)",
    )
    onnx_int8_fp32_fallback: list[str] = setting(
        list(OnnxExportConfig.fp32_fallback),
        "more such patterns, added one at a time while the int8 file fails only its macro-F1 check",
    )
    # Parity of the ONNX files with torch on the parity texts (onnx_<name> for each name in
    # pipeline.model.onnx_export.TOLERANCES); beyond one, `stage` fails and build/hub/model is kept as it was.
    onnx_max_abs_diff_fp32: float = setting(
        OnnxExportConfig.max_abs_diff_fp32, "largest probability difference of model.onnx from torch; beyond it `stage` fails"
    )
    onnx_max_abs_diff_int8: float = setting(
        OnnxExportConfig.max_abs_diff_int8, "largest probability difference of model_quantized.onnx from torch"
    )
    onnx_max_label_change_int8: float = setting(
        OnnxExportConfig.max_label_change_int8, "share of attribute labels model_quantized.onnx may change"
    )
    onnx_max_macro_f1_loss_int8: float = setting(
        OnnxExportConfig.max_macro_f1_loss_int8,
        "largest macro-F1 loss of one attribute, model_quantized.onnx against torch, on the validation split",
    )
    dataset_figures: list[str] = setting(["data*.png"], "report PNGs the dataset card shows")
    model_figures: list[str] = setting(["eval_*.png", "train_*.png"], "report PNGs the model card shows")

    def __post_init__(self) -> None:
        for name in ONNX_TOLERANCES:
            if not 0.0 <= getattr(self, f"onnx_{name}") <= 1.0:
                raise ConfigError(f"[stage] onnx_{name} must be in [0, 1], got {getattr(self, f'onnx_{name}')}")

    def onnx_export_config(self) -> OnnxExportConfig:
        tolerances = {name: getattr(self, f"onnx_{name}") for name in ONNX_TOLERANCES}
        return OnnxExportConfig(
            quantize=self.onnx_quantize,
            fp32_nodes=tuple(self.onnx_int8_fp32_nodes),
            fp32_fallback=tuple(self.onnx_int8_fp32_fallback),
            **tolerances,
        )


# ---------------------------------------------------------------------------------------------
# Folders


def _replace_dir(built: Path, target: Path) -> None:
    """Swap a completely built folder in for `target`."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    built.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _fresh_dir(target: Path) -> Path:
    work = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def _figures(reports_dir: Path, listed: Iterable[str], patterns: Iterable[str]) -> list[Path]:
    """Report PNGs: the ones a report lists, then the ones matching `patterns`, each once."""
    found: dict[str, Path] = {}
    for name in listed:
        if (reports_dir / name).is_file():
            found.setdefault(name, reports_dir / name)
        else:
            log.warning("figure %s listed by a report is missing; left out", reports_dir / name)
    for pattern in patterns:
        for path in sorted(reports_dir.glob(pattern)):
            found.setdefault(path.name, path)
    return list(found.values())


def _copy_figures(paths: list[Path], out_dir: Path) -> list[Figure]:
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for path in paths:
        shutil.copyfile(path, out_dir / path.name)
        caption = path.stem.replace("_", " ")
        figures.append(Figure(caption, f"{REPORTS_DIR}/{path.name}"))
    return figures


# ---------------------------------------------------------------------------------------------
# Dataset


def _split_of(path: Path) -> str:
    return path.name.split("-", 1)[0].split(".", 1)[0]


def read_dataset_files(dataset_dir: Path) -> DatasetFacts:
    """The staged dataset's parquet files as the cards need them; every attribute column must be
    a `ClassLabel` with the schema's values."""
    import datasets
    import pyarrow.parquet as pq

    data_dir = Path(dataset_dir) / DATA_DIR
    paths = sorted(data_dir.rglob("*.parquet"))
    if not paths:
        raise StageInputError(f"{data_dir}: no parquet files; run `python -m pipeline split` first")
    by_split: dict[str, list[Path]] = {}
    for path in paths:
        by_split.setdefault(_split_of(path), []).append(path)
    order = [s for s in SPLITS if s in by_split] + sorted(set(by_split) - set(SPLITS))
    features = None
    frames, num_bytes, files = {}, {}, {}
    problems = []
    for split in order:
        tables = []
        for path in by_split[split]:
            schema = pq.read_schema(path)
            file_features = datasets.Features.from_arrow_schema(schema)
            for attribute in ATTRIBUTES:
                feature = file_features.get(attribute.name)
                names = getattr(feature, "names", None)
                if names != list(attribute.values):
                    problems.append(
                        f"{path}: column '{attribute.name}' must be ClassLabel{list(attribute.values)}, got {feature!r}"
                    )
            if features is None:
                features = file_features
            elif file_features != features:
                problems.append(f"{path}: features differ from {paths[0]}")
            tables.append(pq.read_table(path))
        if problems:
            continue
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        for name, feature in features.items():
            if isinstance(feature, datasets.ClassLabel):
                frame[name] = frame[name].map(lambda i, f=feature: f.int2str(int(i)))
        frames[split] = frame
        num_bytes[split] = int(sum(t.nbytes for t in tables))
        files[split] = [p.relative_to(dataset_dir).as_posix() for p in by_split[split]]
    if problems:
        raise StageInputError("dataset files break the schema:\n" + "\n".join(f"  {p}" for p in problems))
    return DatasetFacts(files, features, frames, num_bytes, sum(p.stat().st_size for p in paths))


def data_reports(reports_dir: Path, config: StageConfig) -> tuple[DataReports, list[Path]]:
    """The data stages' reports (each optional) and the figures the dataset card shows."""
    reports = DataReports(
        data=read_json(reports_dir / "data.json"),
        clean=read_json(reports_dir / "clean.json"),
        dedup=read_json(reports_dir / "dedup.json"),
        generate=read_json(reports_dir / "generate_summary.json"),
        label=read_json(reports_dir / "label_agreement.json"),
    )
    listed = ((reports.data or {}).get("figures") or {}).values()
    return reports, _figures(reports_dir, listed, config.dataset_figures)


def stage_dataset(
    layout: BuildLayout, config: StageConfig, repos: HubRepos, release: Release
) -> tuple[StagedFolder, list[str]]:
    """Complete `build/hub/dataset` around the split stage's `data/` with the card and reports;
    returns the folder and the languages of its rows."""
    folder = layout.hub_dataset
    facts = read_dataset_files(folder)
    reports, figure_paths = data_reports(layout.reports, config)
    work = _fresh_dir(folder.with_name(f"{folder.name}-card"))
    try:
        out_reports = work / REPORTS_DIR
        reports.figures = _copy_figures(figure_paths, out_reports)
        for name in ("data.json", "data.md"):
            if (layout.reports / name).is_file():
                shutil.copyfile(layout.reports / name, out_reports / name)
        card = render_dataset_card(
            facts, reports, repos, release, config.dataset_license, config.dataset_pretty_name, config.tags, folder
        )
        card.save(work / CARD)
        # Everything but the split stage's data files is this stage's: replace it.
        for entry in folder.iterdir():
            if entry.name != DATA_DIR:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        for entry in work.iterdir():
            entry.rename(folder / entry.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("staged dataset: %d rows in %s", facts.num_rows, ", ".join(facts.files))
    return StagedFolder(folder, folder_hashes(folder)), languages_present(facts.all_rows)


# ---------------------------------------------------------------------------------------------
# Model


def saved_thresholds(model_dir: Path) -> Thresholds:
    from transformers import AutoConfig

    if not (model_dir / "config.json").is_file():
        raise StageInputError(f"{model_dir}: no config.json; run `python -m pipeline train` first")
    model_config = AutoConfig.from_pretrained(model_dir)
    if not getattr(model_config, CONFIG_KEY, None):
        raise StageInputError(f"{model_dir / 'config.json'}: no {CONFIG_KEY}; run `python -m pipeline evaluate` first")
    return Thresholds.from_config(model_config)


def _check_thresholds(thresholds: Thresholds, eval_report: dict, where: Path) -> None:
    """The staged model must carry the thresholds its evaluation report was scored with."""
    evaluated = eval_report["models"][MODEL_KEY]["thresholds"]
    differ = [k for k, v in thresholds.values.items() if abs(float(evaluated.get(k, -1)) - v) > 1e-6]
    if differ:
        raise StageInputError(
            f"{where}: {CONFIG_KEY} differ from eval.json for {', '.join(differ)}; run `python -m pipeline evaluate` again"
        )


def _export_onnx(
    model_dir: Path, config: StageConfig, source: Path, target: Path, labelled: pd.DataFrame | None
) -> dict:
    """Export `model_dir`, the staging copy of `source`, to ONNX, checking the int8 file's
    macro-F1 on the `labelled` rows (the validation split); `OnnxParityError` naming `source`
    when a file fails the parity check."""
    try:
        result = export_onnx(model_dir, config.onnx_export_config(), labelled=labelled)
    except OnnxParityError as exc:
        tolerances = ", ".join(f"onnx_{name} = {getattr(config, f'onnx_{name}'):g}" for name in ONNX_TOLERANCES)
        note = f"Tolerances: [stage] {tolerances}. The model was not staged; {target} is left as it was."
        raise OnnxParityError(source, exc.problems, note, macro_f1_only=exc.macro_f1_only) from exc
    diffs = {result.fp32_path.name: result.max_abs_diff_fp32}
    if result.int8_path is not None:
        diffs[result.int8_path.name] = result.max_abs_diff_int8
    return {
        "files": dict(result.sizes_mb),
        "max_abs_diff": diffs,
        "labels_changed": {Path(p.file).name: p.labels_changed for p in result.parity},
        "parity_labels": result.parity[0].labels,
        "fp32_nodes": list(result.fp32_nodes),
        "macro_f1_loss": {
            Path(p.file).name: {"attribute": p.macro_f1_loss_attribute, "loss": p.macro_f1_loss, "rows": p.labelled_rows}
            for p in result.parity
            if p.macro_f1_loss is not None
        },
    }


def _validation_rows(layout: BuildLayout) -> pd.DataFrame | None:
    """The validation split the int8 file's macro-F1 is checked on (None without one)."""
    path = layout.splits / "validation.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def stage_model(layout: BuildLayout, config: StageConfig, repos: HubRepos, release: Release, languages: list[str]) -> tuple[StagedFolder, dict | None]:
    """Write `build/hub/model`: the trained model, its ONNX export, reports and model card."""
    from pipeline.model.inference import ONNX_DIR

    eval_report = read_json(layout.reports / "eval.json", required_by="evaluate")
    train_report = read_json(layout.reports / "train.json")
    thresholds = saved_thresholds(layout.model)
    _check_thresholds(thresholds, eval_report, layout.model / "config.json")
    target = layout.hub_model
    work = _fresh_dir(target)
    try:
        for rel in staged_files(layout.model):
            if PurePosixPath(rel).parts[0] == ONNX_DIR:
                continue  # exported again below from these weights
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(layout.model / rel, work / rel)
        onnx = _export_onnx(work, config, layout.model, target, _validation_rows(layout)) if config.onnx else None
        out_reports = work / REPORTS_DIR
        listed = list((eval_report.get("figures") or {}).values())
        figures = _copy_figures(_figures(layout.reports, listed, config.model_figures), out_reports)
        for name in ("eval.json", "eval.md", "train.json"):
            if (layout.reports / name).is_file():
                shutil.copyfile(layout.reports / name, out_reports / name)
        reports = ModelReports(eval_report, train_report, onnx, figures)
        card = render_model_card(
            reports,
            thresholds,
            repos,
            release,
            config.license,
            languages,
            config.model_pretty_name,
            config.dataset_pretty_name,
            config.tags,
            work,
        )
        card.save(work / CARD)
        _replace_dir(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("staged model into %s", target)
    return StagedFolder(target, folder_hashes(target)), onnx


# ---------------------------------------------------------------------------------------------
# Space


def _module_file(name: str) -> Path | None:
    """The source file of a first-party module (`pipeline.x`, `space.y`), or None."""
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_closure(entry: str, first_party: tuple[str, ...] = ("pipeline", "space")) -> list[str]:
    """The first-party modules `entry` imports at any depth (lazy imports included), with their
    packages: what the Space folder must hold besides `app.py`."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.split(".")[0] in first_party]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module.split(".")[0] in first_party:
                    todo += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return sorted(seen)


def requirement_pins(path: Path) -> dict[str, str]:
    """The `name==version` pins of a requirements file, by the name as written (extras and
    markers allowed); comments, options (`--extra-index-url`) and unpinned lines are skipped."""
    from packaging.requirements import Requirement

    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        exact = [s.version for s in requirement.specifier if s.operator == "=="]
        if len(exact) == 1:
            pins[requirement.name] = exact[0]
    return pins


def check_requirements(path: Path) -> dict[str, str]:
    """The `name==version` pins of a requirements file; a pin that differs from the installed
    version is logged (the Space would run other code than the one this build tested)."""
    pins = requirement_pins(path)
    for name, version in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if (installed or "").split("+")[0] != version:
            log.warning("%s pins %s==%s but %s is installed here", path, name, version, installed or "nothing")
    return pins


def stage_space(layout: BuildLayout, config: StageConfig, repos: HubRepos, release: Release) -> tuple[StagedFolder, dict[str, str]]:
    """Write `build/hub/space`: app entry, the modules it imports, pinned requirements, README."""
    from space.app import api_snippet

    if not SPACE_REQUIREMENTS.is_file():
        raise StageInputError(f"{SPACE_REQUIREMENTS} not found: the Space needs its requirements file")
    requirements = check_requirements(SPACE_REQUIREMENTS)
    modules = module_closure(SPACE_ENTRY)
    target = layout.hub_space
    work = _fresh_dir(target)
    try:
        for name in modules:
            source = _module_file(name)
            rel = source.relative_to(REPO_ROOT)
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, work / rel)
        (work / "app.py").write_text(render_space_app(repos), encoding="utf-8")
        shutil.copyfile(SPACE_REQUIREMENTS, work / "requirements.txt")
        card_data = space_card_data(
            repos,
            config.license,
            config.space_title,
            config.space_emoji,
            config.space_color_from,
            config.space_color_to,
            config.space_short_description,
            sdk_version=importlib.metadata.version("gradio"),
            python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
            tags=config.tags,
        )
        card = render_space_readme(card_data, repos, release, api_snippet(repos.space), work)
        card.save(work / CARD)
        _replace_dir(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("staged Space into %s (%d modules, %d pinned requirements)", target, len(modules), len(requirements))
    return StagedFolder(target, folder_hashes(target)), requirements


# ---------------------------------------------------------------------------------------------
# The stage


def stage(layout: BuildLayout, config: StageConfig, repos: HubRepos, version: str = __version__) -> StageResult:
    """Stage the dataset, model and Space folders under `layout.hub` and write the manifest."""
    release = Release(version, data_hash(layout.hub_dataset))
    dataset, languages = stage_dataset(layout, config, repos, release)
    model, onnx = stage_model(layout, config, repos, release, languages)
    space, requirements = stage_space(layout, config, repos, release)
    result = StageResult(release, repos, {"dataset": dataset, "model": model, "space": space}, onnx, requirements)
    write_json(layout.reports / MANIFEST, result.manifest())
    return result
