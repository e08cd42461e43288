"""The ONNX parity check: a file ONNX Runtime cannot run, or whose probabilities or labels differ
from torch's beyond the export config's tolerances, is refused with its name and the measured
values, and a failed export leaves no ONNX file for `Predictor` to pick."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.model.inference import ONNX_DIR, ONNX_FP32, ONNX_INT8, Predictor
from pipeline.model.onnx_export import (
    PARITY_TEXTS,
    OnnxExportConfig,
    OnnxParityError,
    check_parity,
    export_onnx,
    measure_parity,
    quantized_node_count,
)


@pytest.fixture(scope="module")
def exported_dir(gate_head_model_dir, tmp_path_factory) -> Path:
    """The fitted-head model (outputs that follow the command, away from the thresholds) with
    its ONNX files, which pass the default tolerances."""
    model_dir = tmp_path_factory.mktemp("parity") / "model"
    shutil.copytree(gate_head_model_dir, model_dir)
    result = export_onnx(model_dir)
    assert [p.file for p in result.parity] == [f"{ONNX_DIR}/{ONNX_FP32}", f"{ONNX_DIR}/{ONNX_INT8}"]
    return model_dir


@pytest.fixture
def model_copy(exported_dir, tmp_path) -> Path:
    shutil.copytree(exported_dir, tmp_path / "model")
    return tmp_path / "model"


def shuffle_int8_weights(path: Path, seed: int = 0) -> None:
    """Permute the values of every int8 weight tensor: a file that loads and runs, with weights
    that are no longer the model's."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.int8:
            shuffled = rng.permutation(values.ravel()).reshape(values.shape)
            tensor.CopyFrom(numpy_helper.from_array(shuffled, tensor.name))
    onnx.save(model, str(path))


def test_an_int8_file_with_broken_weights_fails_the_parity_check_naming_it(model_copy):
    onnx_dir = model_copy / ONNX_DIR
    shuffle_int8_weights(onnx_dir / ONNX_INT8)
    fp32, int8 = measure_parity(model_copy, [onnx_dir / ONNX_FP32, onnx_dir / ONNX_INT8], PARITY_TEXTS)
    assert int8.label_change_share > OnnxExportConfig().max_label_change_int8 and fp32.labels_changed == 0
    with pytest.raises(OnnxParityError) as info:
        check_parity(model_copy, OnnxExportConfig())
    message = str(info.value)
    assert message.startswith(f"{model_copy}: the ONNX export fails its parity check against torch")
    assert f"{ONNX_DIR}/{ONNX_INT8}: {int8.labels_changed} of {int8.labels} attribute labels" in message
    assert f"{ONNX_DIR}/{ONNX_FP32}:" not in message


def test_an_int8_file_that_loses_macro_f1_on_labelled_rows_fails_naming_the_attribute(model_copy, seed_sample):
    onnx_dir = model_copy / ONNX_DIR
    files = [onnx_dir / ONNX_FP32, onnx_dir / ONNX_INT8]
    fp32, real = measure_parity(model_copy, files, PARITY_TEXTS, seed_sample)
    assert fp32.labelled_rows == real.labelled_rows == len(seed_sample)
    assert fp32.macro_f1_loss == pytest.approx(0.0, abs=1e-9)
    shuffle_int8_weights(onnx_dir / ONNX_INT8)
    _, broken = measure_parity(model_copy, files, PARITY_TEXTS, seed_sample)
    assert broken.macro_f1_loss > max(real.macro_f1_loss, 0.0) + 0.05
    # Labels may change on the parity texts as well; here only the macro-F1 tolerance is in play.
    tolerance = (max(real.macro_f1_loss, 0.0) + broken.macro_f1_loss) / 2
    config = OnnxExportConfig(max_abs_diff_int8=1.0, max_label_change_int8=1.0, max_macro_f1_loss_int8=tolerance)
    with pytest.raises(OnnxParityError) as info:
        check_parity(model_copy, config, labelled=seed_sample)
    assert f"{ONNX_DIR}/{ONNX_INT8}: {broken.macro_f1_loss_attribute} macro-F1 is" in str(info.value)
    assert f"below torch's on the {len(seed_sample)} labelled rows" in str(info.value)


def test_the_parity_check_runs_on_a_model_folder_given_relative_to_the_working_directory(model_copy, monkeypatch):
    monkeypatch.chdir(model_copy.parent)
    parity = check_parity(Path(model_copy.name), OnnxExportConfig())
    assert [p.file for p in parity] == [f"{ONNX_DIR}/{ONNX_FP32}", f"{ONNX_DIR}/{ONNX_INT8}"]
    assert all(p.texts == len(PARITY_TEXTS) for p in parity)


def test_an_int8_file_onnx_runtime_cannot_load_fails_the_parity_check(model_copy):
    int8 = model_copy / ONNX_DIR / ONNX_INT8
    int8.write_bytes(int8.read_bytes()[: int8.stat().st_size // 2])
    with pytest.raises(OnnxParityError, match=rf"{ONNX_DIR}/{ONNX_INT8}: ONNX Runtime cannot run it"):
        check_parity(model_copy, OnnxExportConfig())


def test_a_failed_export_leaves_no_onnx_file_and_predictor_uses_torch(model_copy):
    with pytest.raises(OnnxParityError, match=rf"{ONNX_DIR}/{ONNX_INT8}: probabilities differ from torch's by up to"):
        export_onnx(model_copy, OnnxExportConfig(max_abs_diff_int8=0.0))
    assert not (model_copy / ONNX_DIR).exists()
    assert Predictor(model_copy).backend == "torch"


def test_tolerances_are_checked():
    with pytest.raises(ValueError, match=r"max_abs_diff_int8 must be in \[0, 1\], got -0.1"):
        OnnxExportConfig(max_abs_diff_int8=-0.1)


FFN_DOWN = r".*/encoder/layer\.\d+/output/dense/MatMul"


def _quantized_matmuls(path: Path) -> tuple[set[str], set[str]]:
    """(MatMul nodes left in fp32, integer MatMul nodes) of an int8 file."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    return {n.name for n in nodes if n.op_type == "MatMul"}, {n.name for n in nodes if n.op_type == "MatMulInteger"}


def test_fp32_nodes_keep_exactly_the_matched_matmuls_in_fp32(model_copy):
    fp32_names, _ = _quantized_matmuls(model_copy / ONNX_DIR / ONNX_INT8)
    assert not any(re.fullmatch(FFN_DOWN, n) for n in fp32_names)  # the default quantizes them
    export_onnx(model_copy, OnnxExportConfig(fp32_nodes=(FFN_DOWN,)))
    fp32_names, integer = _quantized_matmuls(model_copy / ONNX_DIR / ONNX_INT8)
    kept = {n for n in fp32_names if re.fullmatch(FFN_DOWN, n)}
    assert kept and len(kept) == len([n for n in fp32_names if "output/dense" in n and "attention" not in n])
    assert integer  # everything else is still int8


def test_an_fp32_pattern_matching_no_node_is_refused_by_name(model_copy):
    with pytest.raises(ValueError, match=r"'/no/such/node' matches no node"):
        export_onnx(model_copy, OnnxExportConfig(fp32_nodes=("/no/such/node",)))


def test_fp32_fallback_patterns_are_added_until_the_macro_f1_check_passes(model_copy, seed_sample):
    fallback = (r".*Gemm", FFN_DOWN, r"Attention_\d+", r".*MatMul")
    # No macro-F1 loss allowed: a recipe passes only when its int8 file is as good as torch on
    # these rows; the last fallback keeps every node in fp32, which is no int8 file at all.
    config = OnnxExportConfig(max_macro_f1_loss_int8=0.0, fp32_fallback=fallback)
    try:
        result = export_onnx(model_copy, config, labelled=seed_sample)
    except OnnxParityError as exc:
        assert "no node is left in int8" in str(exc)
        assert any("macro-F1 is" in p for p in exc.problems)  # why the recipe before it failed
        assert not (model_copy / ONNX_DIR).exists()
        return
    assert result.parity[1].macro_f1_loss <= 0.0
    assert result.fp32_nodes == list(fallback[: len(result.fp32_nodes)])
    assert quantized_node_count(model_copy / ONNX_DIR / ONNX_INT8) > 0
    import onnx

    nodes = onnx.load(str(model_copy / ONNX_DIR / ONNX_INT8), load_external_data=False).graph.node
    # Float nodes, by their source name (a Gemm comes out as the MatMul `<name>_MatMul`).
    kept = {n.name.removesuffix("_MatMul") for n in nodes if n.op_type in ("MatMul", "Gemm", "Attention")}
    for pattern in result.fp32_nodes:  # each pattern's nodes are still float, not int8
        assert any(re.fullmatch(pattern, n) for n in kept)


def test_a_recipe_that_keeps_every_node_in_fp32_is_no_int8_file(model_copy):
    assert quantized_node_count(model_copy / ONNX_DIR / ONNX_INT8) > 0
    everything = (r".*MatMul", r"Attention_\d+", r".*Gemm")
    with pytest.raises(OnnxParityError, match="no node is left in int8"):
        export_onnx(model_copy, OnnxExportConfig(fp32_nodes=everything))
    assert not (model_copy / ONNX_DIR).exists()


def test_without_fallback_a_macro_f1_miss_fails_the_export_and_leaves_no_file(model_copy, seed_sample):
    fp32, real = measure_parity(
        model_copy, [model_copy / ONNX_DIR / ONNX_FP32, model_copy / ONNX_DIR / ONNX_INT8], PARITY_TEXTS, seed_sample
    )
    if real.macro_f1_loss <= 0.0:
        pytest.skip("int8 rounding costs this model no macro-F1 on these rows on this CPU")
    with pytest.raises(OnnxParityError, match="macro-F1 is") as info:
        export_onnx(model_copy, OnnxExportConfig(max_macro_f1_loss_int8=0.0), labelled=seed_sample)
    assert info.value.macro_f1_only
    assert not (model_copy / ONNX_DIR).exists()
