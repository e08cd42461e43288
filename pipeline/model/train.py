"""`train`: fine-tune the backbone into the seven-output classifier on the split dataset.

Reads `build/data/splits/{train,validation}.parquet`, augments the training split only, trains
with `transformers.Trainer` (our loss and metrics; its own schedule, accumulation, mixed
precision, early stopping and multi-GPU through `accelerate launch` / `torchrun`) and writes
`build/model/` (safetensors, tokenizer, `id2label`, thresholds 0.5 until `evaluate` tunes them),
`build/reports/train.json` and `build/reports/train_curve.png`.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.config import DEFAULT_BACKBONE, setting, to_dict
from pipeline.core.decision import DEFAULT_THRESHOLD, Thresholds
from pipeline.core.schema import (
    ATTRIBUTE_NAMES,
    BINARY_ATTRIBUTES,
    CorpusError,
    ID,
    LABEL2ID,
    LANG,
    LANGUAGES,
    MODEL_OUTPUTS,
    REQUIRED_COLUMNS,
    RISK,
    RowProblem,
    TEXT,
    targets_from_frame,
    validate_row,
)
from pipeline.data.augment import LOCAL_KINDS, AugmentConfig, ParaphraseConfig, augment_frame
from pipeline.llm.client import ProviderConfig
from pipeline.model.losses import MultiLabelLoss, positive_class_weights
from pipeline.model.metrics import mean_macro_f1

log = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
MIXED_PRECISION = ("auto", "bf16", "fp16", "no")


@dataclass
class TrainConfig:
    """The `[train]` table of a preset."""

    backbone: str = setting(DEFAULT_BACKBONE, "Hub id or local folder of the encoder to fine-tune")
    max_length: int = setting(64, "tokens per command; longer ones are cut")
    epochs: float = setting(3.0, "passes over the (augmented) training split")
    max_steps: int = setting(-1, "optimizer steps; > 0 overrides epochs")
    batch_size: int = setting(32, "rows per device per forward pass")
    eval_batch_size: int = setting(64, "rows per device when scoring the validation split")
    gradient_accumulation_steps: int = setting(1, "forward passes per optimizer step")
    learning_rate: float = setting(5e-5, "peak learning rate of the encoder")
    head_learning_rate: float | None = setting(
        None, "peak rate of the new pooler + classifier head; None = learning_rate"
    )
    weight_decay: float = setting(0.01, "AdamW weight decay")
    optim: str = setting("adamw_torch", "a `transformers` optimizer name (OptimizerNames)")
    max_grad_norm: float = setting(1.0, "gradient clipping; 0 turns it off")
    lr_scheduler: str = setting("linear", "linear, cosine, constant_with_warmup, ... (SchedulerType)")
    warmup_ratio: float = setting(0.1, "share of the optimizer steps spent warming up linearly from 0")
    dropout: float | None = setting(None, "replaces every dropout probability of the model when set")
    freeze_embeddings: bool = setting(
        False, "keep the word-embedding matrix fixed (faster on CPU, less overfitting)"
    )
    freeze_layers: int = setting(0, "keep the embeddings and this many bottom encoder layers fixed")
    focal_loss: bool = setting(True, "focal binary cross-entropy instead of plain BCE")
    focal_gamma: float = setting(2.0, "focusing parameter; 0 is plain BCE")
    class_weighting: bool = setting(True, "weight each output's positive term by its class imbalance")
    class_weight_power: float = setting(0.5, "(negatives/positives) ** power; 1 fully balances")
    language_repeats: dict = setting(
        {}, "copies of each training row of a language, e.g. {ar = 2} to see Arabic rows twice; "
        "the copies are augmented apart like any row"
    )
    augment: bool = setting(True, "augment the training split (never validation or test)")
    augment_kinds: list[str] = setting(
        list(LOCAL_KINDS), "local augmentation kinds drawn from, one per copy"
    )
    augment_copies: int = setting(
        1, "local augmented copies per selected training row, one random kind each"
    )
    augment_fraction: float = setting(1.0, "share of training rows that get local copies")
    augment_deletion_p: float = setting(0.1, "per-word deletion probability (negations are kept)")
    augment_swap_n: int = setting(1, "word pairs swapped per copy")
    augment_typo_p: float = setting(0.1, "per-word probability of one keyboard typo")
    augment_obfuscation_p: float = setting(0.3, "share of letters the leet and homoglyph kinds replace")
    paraphrase_base_url: str = setting("", "OpenAI-compatible endpoint for LLM paraphrases; empty = off")
    paraphrase_model: str = setting("", "model name at that endpoint")
    paraphrase_copies: int = setting(1, "paraphrases asked per training row")
    paraphrase_api_key_env: str = setting(
        "", "environment variable holding the key; empty for a local server"
    )
    early_stopping: bool = setting(True, "stop when validation macro-F1 stops improving; keep the best")
    early_stopping_patience: int = setting(2, "evaluations without improvement before stopping")
    early_stopping_threshold: float = setting(0.0, "smallest macro-F1 gain that counts as improvement")
    eval_steps: int = setting(0, "evaluate every this many optimizer steps; 0 = once per epoch")
    logging_steps: int = setting(10, "optimizer steps between training-loss points of the curve")
    lora: bool = setting(
        False, "train LoRA adapters (plus the head) instead of all weights; merged at export"
    )
    lora_r: int = setting(16, "LoRA rank")
    lora_alpha: int = setting(32, "LoRA scaling numerator")
    lora_dropout: float = setting(0.1, "dropout on the LoRA path")
    lora_target_modules: list[str] = setting(["query", "key", "value"], "modules that get LoRA adapters")
    mixed_precision: str = setting("auto", "auto (bf16, else fp16, on GPU; none on CPU), bf16, fp16, no")
    group_by_length: bool = setting(True, "batch commands of similar length (less padding)")
    dataloader_workers: int = setting(0, "DataLoader worker processes")
    seed: int = setting(42, "model init, data order, dropout and augmentation")
    training_args: dict = setting(
        {}, "any other transformers.TrainingArguments field, e.g. {gradient_checkpointing = true}; "
        "the ones the fields above set are refused"
    )


@dataclass
class TrainResult:
    """What training did, for the report and the model card."""

    model_dir: Path
    log_history: list[dict]
    global_step: int
    epochs_completed: float
    max_steps: int
    best_metric: float | None
    best_step: int | None
    stopped_early: bool
    wall_time_s: float
    cpu_time_s: float
    n_train_rows: int
    n_validation_rows: int
    augmented: dict[str, int]
    pos_weight: dict[str, float] | None
    device: str
    world_size: int
    mixed_precision: str
    is_main_process: bool = True


# ---------------------------------------------------------------------------------------------
# Inputs


def read_split(path: Path) -> pd.DataFrame:
    """One split file (parquet with the schema columns), validated; `CorpusError` names the
    file, row and column of every bad cell."""
    if not path.is_file():
        raise CorpusError([RowProblem(str(path), 0, "-", "", "split file not found; run `split` first")])
    frame = pd.read_parquet(path)
    missing = [c for c in (ID,) + REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CorpusError([RowProblem(str(path), 0, c, "", "required column missing") for c in missing])
    if frame.empty:
        raise CorpusError([RowProblem(str(path), 0, "-", "", "split has no rows")])
    problems: list[RowProblem] = []
    for i, row in enumerate(frame[list((ID,) + REQUIRED_COLUMNS)].astype(str).to_dict("records")):
        problems.extend(validate_row(row, str(path), i + 1))
    if problems:
        raise CorpusError(problems)
    return frame.reset_index(drop=True)


def read_splits(directory: Path, names: tuple[str, ...] = SPLIT_NAMES) -> dict[str, pd.DataFrame]:
    """The named splits of a split folder; every bad file is reported, not only the first."""
    frames, problems = {}, []
    for name in names:
        try:
            frames[name] = read_split(directory / f"{name}.parquet")
        except CorpusError as exc:
            problems.extend(exc.problems)
    if problems:
        raise CorpusError(problems)
    return frames


def augment_config(config: TrainConfig, cache_dir: Path | None = None) -> AugmentConfig:
    """The augmentation settings of a train config."""
    paraphrase = None
    if config.paraphrase_base_url:
        if not config.paraphrase_model:
            raise ValueError("train.paraphrase_model must be set with train.paraphrase_base_url")
        paraphrase = ParaphraseConfig(
            provider=ProviderConfig(
                model=config.paraphrase_model,
                name=f"paraphrase:{config.paraphrase_model}",
                base_url=config.paraphrase_base_url,
                api_key_env=config.paraphrase_api_key_env,
                temperature=0.7,
                max_tokens=1024,
            ),
            copies=config.paraphrase_copies,
            cache_file=None if cache_dir is None else cache_dir / "paraphrases.jsonl",
            seed=config.seed,
        )
    return AugmentConfig(
        kinds=tuple(config.augment_kinds),
        copies=config.augment_copies,
        fraction=config.augment_fraction,
        deletion_p=config.augment_deletion_p,
        swap_n=config.augment_swap_n,
        typo_p=config.augment_typo_p,
        obfuscation_p=config.augment_obfuscation_p,
        paraphrase=paraphrase,
        seed=config.seed,
    )


def repeat_languages(frame: pd.DataFrame, repeats: dict) -> pd.DataFrame:
    """`frame` with each row of a language in `repeats` present that many times (1 = as is);
    a language outside the schema or a count below 1 is refused by name."""
    unknown = sorted(set(repeats) - set(LANGUAGES))
    if unknown:
        raise ValueError(f"train.language_repeats: unknown language {', '.join(unknown)}; known: {', '.join(LANGUAGES)}")
    bad = {lang: n for lang, n in repeats.items() if not isinstance(n, int) or n < 1}
    if bad:
        raise ValueError(f"train.language_repeats: counts must be whole numbers >= 1, got {bad}")
    counts = frame[LANG].map(lambda lang: repeats.get(lang, 1)).to_numpy()
    if (counts == 1).all():
        return frame
    out = frame.loc[frame.index.repeat(counts)].reset_index(drop=True)
    if ID in out.columns:
        # Copy r of a row is `<id>#repeat<r>`, so augmentation (seeded by id) draws it apart.
        copy = out.groupby(ID, sort=False).cumcount().to_numpy()
        out[ID] = [str(i) if c == 0 else f"{i}#repeat{c}" for i, c in zip(out[ID], copy)]
    return out


def training_rows(
    train_frame: pd.DataFrame, config: TrainConfig, cache_dir: Path | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows the model trains on: the training split (its rows repeated per
    `config.language_repeats`) plus its augmented copies."""
    train_frame = repeat_languages(train_frame, config.language_repeats)
    if not config.augment:
        return train_frame, {}
    result = augment_frame(train_frame, augment_config(config, cache_dir))
    return result.frame, result.added


def gold_classes_from_targets(targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per attribute, class indices from the (n, 7) 0/1 targets (risk = sum of its two)."""
    targets = np.asarray(targets) >= 0.5
    out = {name: targets[:, LABEL2ID[name]].astype(np.int64) for name in BINARY_ATTRIBUTES}
    out[RISK.name] = targets[:, LABEL2ID["risk_at_least_medium"]].astype(np.int64) + targets[
        :, LABEL2ID["risk_high"]
    ].astype(np.int64)
    return out


def validation_metrics(eval_prediction) -> dict[str, float]:
    """Trainer `compute_metrics`: per-attribute macro-F1 at 0.5 thresholds and their mean."""
    logits = np.asarray(eval_prediction.predictions, dtype=np.float64)
    probs = 1.0 / (1.0 + np.exp(-logits))
    gold = gold_classes_from_targets(eval_prediction.label_ids)
    return mean_macro_f1(gold, probs, np.full(len(MODEL_OUTPUTS), DEFAULT_THRESHOLD))


# ---------------------------------------------------------------------------------------------
# Training


def _dataset(frame: pd.DataFrame, tokenizer, max_length: int):
    from datasets import Dataset

    encoded = tokenizer(list(frame[TEXT].astype(str)), truncation=True, max_length=max_length)
    columns = {key: encoded[key] for key in encoded.keys()}
    columns["labels"] = targets_from_frame(frame).tolist()
    return Dataset.from_dict(columns)


def training_arguments(config: TrainConfig, ours: dict) -> dict:
    """`ours` (the TrainingArguments the fields of `config` set) with `config.training_args`
    added; a key that is no TrainingArguments field, or one that `ours` already sets, is refused
    by name (the second has its own `train.` field)."""
    import dataclasses

    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    unknown = sorted(set(config.training_args) - known)
    if unknown:
        raise ValueError(f"train.training_args: {', '.join(unknown)} is not a transformers.TrainingArguments field")
    taken = sorted(set(config.training_args) & set(ours))
    if taken:
        raise ValueError(f"train.training_args: {', '.join(taken)} is set by the train.* fields; set those instead")
    return ours | dict(config.training_args)


def _precision_flags(mode: str) -> tuple[bool, bool, str]:
    import torch

    if mode not in MIXED_PRECISION:
        raise ValueError(f"train.mixed_precision must be one of {MIXED_PRECISION}, got {mode!r}")
    if mode == "no" or not torch.cuda.is_available():
        if mode in ("bf16", "fp16") and not torch.cuda.is_available():
            log.warning("mixed precision %s asked for but no GPU; training in fp32", mode)
        return False, False, "no"
    if mode == "auto":
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return mode == "bf16", mode == "fp16", mode


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _build_model(config: TrainConfig):
    from transformers import set_seed

    from pipeline.model.modeling import build_classifier

    set_seed(config.seed)
    model = build_classifier(config.backbone)
    if config.dropout is not None:
        import torch

        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = config.dropout
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            if hasattr(model.config, key):
                setattr(model.config, key, config.dropout)
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if config.freeze_layers:
        layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
        if layers is None or config.freeze_layers > len(layers):
            raise ValueError(
                f"train.freeze_layers={config.freeze_layers}: {config.backbone} has "
                f"{'no encoder.layer list' if layers is None else f'{len(layers)} layers'}"
            )
        model.base_model.embeddings.requires_grad_(False)
        for layer in layers[: config.freeze_layers]:
            layer.requires_grad_(False)
    if config.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(config.lora_target_modules),
            ),
        )
    return model


HEAD_MODULES = ("pooler", "classifier")


def head_optimizer(model, args, head_learning_rate: float) -> tuple[type, dict]:
    """`optimizer_cls_and_kwargs` for the Trainer: its configured optimizer with the pooler and
    classifier (near-zero output at the start) at `head_learning_rate`, the encoder at the
    base rate; no weight decay on biases and norms, as the Trainer does."""
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import get_parameter_names

    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    decay = set(get_parameter_names(model, [torch.nn.LayerNorm], [r"bias", r"layernorm", r"norm"]))
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            head = any(part in HEAD_MODULES for part in name.split("."))
            groups.setdefault((head, name in decay), []).append(param)
    params = [
        {
            "params": group,
            "lr": head_learning_rate if head else args.learning_rate,
            "weight_decay": args.weight_decay if decays else 0.0,
        }
        for (head, decays), group in sorted(groups.items())
    ]
    return cls, {**kwargs, "params": params}


def train(
    train_frame: pd.DataFrame,
    validation_frame: pd.DataFrame,
    config: TrainConfig,
    out_dir: Path,
    work_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> TrainResult:
    """Fine-tune `config.backbone` on `train_frame` (augmented), select on `validation_frame`,
    and save the plain seven-output model to `out_dir`. Checkpoints go to `work_dir` (a
    temporary folder by default) and are removed once the model is saved."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments

    from pipeline.model.modeling import load_tokenizer, save_classifier

    if not 0.0 <= config.warmup_ratio < 1.0:
        raise ValueError(f"train.warmup_ratio must be in [0, 1), got {config.warmup_ratio}")
    started, cpu_started = time.perf_counter(), time.process_time()
    own_work_dir = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="lm-action-train-")) if own_work_dir else Path(work_dir)
    bf16, fp16, precision = _precision_flags(config.mixed_precision)
    per_epoch = config.eval_steps <= 0
    args = TrainingArguments(**training_arguments(config, dict(
        output_dir=str(work),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        optim=config.optim,
        max_grad_norm=config.max_grad_norm,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        eval_strategy="epoch" if per_epoch else "steps",
        # Checkpoints only serve to restore the best model at the end.
        save_strategy=("epoch" if per_epoch else "steps") if config.early_stopping else "no",
        eval_steps=None if per_epoch else config.eval_steps,
        save_steps=None if per_epoch else config.eval_steps,
        save_total_limit=1,
        save_only_model=True,
        load_best_model_at_end=config.early_stopping,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        bf16=bf16,
        fp16=fp16,
        seed=config.seed,
        data_seed=config.seed,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        dataloader_num_workers=config.dataloader_workers,
        report_to="none",
    )))
    with args.main_process_first(desc="augment"):
        rows, added = training_rows(train_frame, config, cache_dir)
    tokenizer = load_tokenizer(config.backbone)
    train_dataset = _dataset(rows, tokenizer, config.max_length)
    eval_dataset = _dataset(validation_frame, tokenizer, config.max_length)

    pos_weight = None
    if config.class_weighting:
        pos_weight = positive_class_weights(targets_from_frame(train_frame), config.class_weight_power)
    loss = MultiLabelLoss(config.focal_gamma if config.focal_loss else 0.0, pos_weight)

    callbacks = []
    if config.early_stopping:
        callbacks.append(EarlyStoppingCallback(config.early_stopping_patience, config.early_stopping_threshold))
    model = _build_model(config)
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=DataCollatorWithPadding(tokenizer),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        compute_loss_func=loss,
        compute_metrics=validation_metrics,
        callbacks=callbacks,
        optimizer_cls_and_kwargs=(
            head_optimizer(model, args, config.head_learning_rate) if config.head_learning_rate else None
        ),
    )
    log.info(
        "training on %d rows (%d augmented), validating on %d; device %s, precision %s",
        len(rows), len(rows) - len(train_frame), len(validation_frame), _device_name(), precision,
    )
    trainer.train()
    state = trainer.state
    model = trainer.model
    if config.lora:
        model = model.merge_and_unload()
    if trainer.is_world_process_zero():
        save_classifier(model, tokenizer, out_dir, Thresholds())
    if own_work_dir:
        shutil.rmtree(work, ignore_errors=True)
    best_step = None
    if state.best_model_checkpoint:
        best_step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    return TrainResult(
        model_dir=Path(out_dir),
        log_history=list(state.log_history),
        global_step=int(state.global_step),
        epochs_completed=float(state.epoch or 0.0),
        max_steps=int(state.max_steps),
        best_metric=None if state.best_metric is None else float(state.best_metric),
        best_step=best_step,
        stopped_early=bool(state.global_step < state.max_steps),
        wall_time_s=time.perf_counter() - started,
        cpu_time_s=time.process_time() - cpu_started,
        n_train_rows=len(rows),
        n_validation_rows=len(validation_frame),
        augmented=added,
        pos_weight=None if pos_weight is None else dict(zip(MODEL_OUTPUTS, map(float, pos_weight))),
        device=_device_name(),
        world_size=int(args.world_size),
        mixed_precision=precision,
        is_main_process=trainer.is_world_process_zero(),
    )


# ---------------------------------------------------------------------------------------------
# Report


def training_curves(log_history: list[dict]) -> dict[str, list[dict]]:
    """The log history as curves: training loss and learning rate per logging step,
    validation loss and macro-F1 per evaluation."""
    train_points = [
        {"step": e["step"], "epoch": e.get("epoch"), "loss": e["loss"], "learning_rate": e.get("learning_rate")}
        for e in log_history
        if "loss" in e
    ]
    eval_points = [
        {
            "step": e["step"],
            "epoch": e.get("epoch"),
            "loss": e.get("eval_loss"),
            "macro_f1": e.get("eval_macro_f1"),
            **{f"macro_f1_{a}": e.get(f"eval_macro_f1_{a}") for a in ATTRIBUTE_NAMES},
        }
        for e in log_history
        if "eval_macro_f1" in e
    ]
    return {"train": train_points, "validation": eval_points}


def plot_training_curve(curves: dict[str, list[dict]], path: Path) -> Path:
    """Loss (training and validation) and validation macro-F1 against optimizer steps."""
    from pipeline.report.plots import pyplot

    plt = pyplot()
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(11, 4))
    train_points, eval_points = curves["train"], curves["validation"]
    ax_loss.plot([p["step"] for p in train_points], [p["loss"] for p in train_points], label="train")
    ax_loss.plot(
        [p["step"] for p in eval_points], [p["loss"] for p in eval_points], "o-", label="validation"
    )
    ax_loss.set(xlabel="optimizer step", ylabel="loss", title="Loss")
    ax_loss.legend()
    ax_f1.plot(
        [p["step"] for p in eval_points], [p["macro_f1"] for p in eval_points], "o-", label="mean", linewidth=2
    )
    for name in ATTRIBUTE_NAMES:
        ax_f1.plot([p["step"] for p in eval_points], [p[f"macro_f1_{name}"] for p in eval_points], alpha=0.5, label=name)
    ax_f1.set(xlabel="optimizer step", ylabel="macro-F1 (thresholds 0.5)", title="Validation macro-F1")
    ax_f1.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def train_report(result: TrainResult, config: TrainConfig, command: str, preset: str) -> dict:
    """The JSON written to `reports/train.json`."""
    import torch
    import transformers

    return {
        "command": command,
        "preset": preset,
        "config": to_dict(config),
        "device": result.device,
        "world_size": result.world_size,
        "mixed_precision": result.mixed_precision,
        "wall_time_s": round(result.wall_time_s, 1),
        # CPU seconds of this process (all its threads): wall time on a shared machine says
        # little, this says what the run costs.
        "cpu_time_s": round(result.cpu_time_s, 1),
        "rows": {"train": result.n_train_rows, "validation": result.n_validation_rows, "augmented": result.augmented},
        "pos_weight": result.pos_weight,
        "global_step": result.global_step,
        "max_steps": result.max_steps,
        "epochs_completed": result.epochs_completed,
        "stopped_early": result.stopped_early,
        "best_validation_macro_f1": result.best_metric,
        "best_step": result.best_step,
        "curves": training_curves(result.log_history),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()},
    }
