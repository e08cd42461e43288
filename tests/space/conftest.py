"""Space fixtures: a small dataset folder, the reports of a small real pipeline run, the loaded
resources and the app served on 127.0.0.1 (one per test session), and where browser screenshots
go."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from pipeline.core.schema import ATTRIBUTES_BY_NAME, CORPUS_COLUMNS, read_corpus_file
from tests.hub_build import staged_build  # noqa: F401 (fixture)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
COMMANDS_CSV = FIXTURES / "space_commands.csv"


def pytest_addoption(parser):
    group = parser.getgroup("space", "LM-Action Space")
    group.addoption(
        "--screenshots-dir",
        default=None,
        help="where the browser tests save screenshots (default: a temporary folder)",
    )
    group.addoption(
        "--space-model-dir",
        default=None,
        help="serve this model in the API and browser tests (default: the untrained test model)",
    )
    group.addoption("--space-dataset-dir", default=None, help="with --space-model-dir: its dataset")
    group.addoption("--space-reports-dir", default=None, help="with --space-model-dir: its reports")


@pytest.fixture(scope="session")
def screenshots_dir(request, tmp_path_factory) -> Path:
    chosen = request.config.getoption("--screenshots-dir")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def space_commands():
    """The fixture commands (every decision, English and Arabic), validated."""
    return read_corpus_file(COMMANDS_CSV)[list(CORPUS_COLUMNS)]


def write_dataset(root: Path, splits: dict, class_labels: bool = True) -> Path:
    """A Hub-style dataset folder, `data/<split>.parquet`, written with `datasets`; attribute
    columns are `ClassLabel`s as in the staged dataset, or plain strings."""
    import datasets

    (root / "data").mkdir(parents=True)
    features = None
    if class_labels:
        features = datasets.Features(
            {
                c: datasets.ClassLabel(names=list(ATTRIBUTES_BY_NAME[c].values))
                if c in ATTRIBUTES_BY_NAME
                else datasets.Value("string")
                for c in CORPUS_COLUMNS
            }
        )
    for name, part in splits.items():
        dataset = datasets.Dataset.from_pandas(part, preserve_index=False, features=features)
        dataset.to_parquet(str(root / "data" / f"{name}.parquet"))
    return root


@pytest.fixture(scope="session")
def dataset_writer():
    """`write_dataset(root, splits, class_labels=True)`, for tests that need their own."""
    return write_dataset


@pytest.fixture(scope="session")
def space_dataset_dir(tmp_path_factory, space_commands) -> Path:
    """The staged dataset's shape: train and test splits of the fixture commands."""
    frame = space_commands.reset_index(drop=True)
    root = tmp_path_factory.mktemp("space_dataset")
    return write_dataset(root, {"train": frame.iloc[:6], "test": frame})


@pytest.fixture(scope="session")
def space_reports_dir(tmp_path_factory, staged_build) -> Path:
    """Reports as the pipeline writes them: the reports folder of the tests' small real build
    (tests/hub_build.py: clean, dedup, split, train, evaluate and stage of a tiny BERT), copied so
    that no test changes the build's files."""
    root = tmp_path_factory.mktemp("space_reports") / "reports"
    shutil.copytree(staged_build.layout.reports, root)
    return root


@pytest.fixture(scope="session")
def four_way_model_dir(tmp_path_factory, space_commands, staged_build) -> Path:
    """The bundled backbone with a head fitted on real embeddings of the fixture commands: one
    logistic regression per output on the pooled output, from the commands' labels. It decides
    every fixture command as its labels do, so it makes all four decisions. It carries the model
    card of the tests' small real build, so the About tab has metrics."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from pipeline.core.config import DEFAULT_BACKBONE
    from pipeline.core.decision import decide, decisions_from_probabilities, Thresholds
    from pipeline.core.schema import BINARY_ATTRIBUTES, MODEL_OUTPUTS, YES
    from pipeline.model.modeling import build_classifier, load_tokenizer, save_classifier

    frame = space_commands.reset_index(drop=True)
    targets = {name: (frame[name] == YES).to_numpy() for name in BINARY_ATTRIBUTES}
    targets["risk_at_least_medium"] = frame["risk"].isin(["medium", "high"]).to_numpy()
    targets["risk_high"] = (frame["risk"] == "high").to_numpy()
    model = build_classifier(DEFAULT_BACKBONE).eval()
    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    with torch.no_grad():
        encoded = tokenizer(list(frame["text"]), padding=True, return_tensors="pt")
        features = model.bert(**encoded).pooler_output.numpy()
    probs = np.zeros((len(frame), len(MODEL_OUTPUTS)))
    with torch.no_grad():
        for j, name in enumerate(MODEL_OUTPUTS):
            fit = LogisticRegression(C=100, max_iter=5000).fit(features, targets[name])
            model.classifier.weight[j] = torch.tensor(fit.coef_[0], dtype=torch.float32)
            model.classifier.bias[j] = float(fit.intercept_[0])
            probs[:, j] = fit.predict_proba(features)[:, 1]
    expected = [decide(row).value for row in frame[list(ATTRIBUTES_BY_NAME)].to_dict("records")]
    assert decisions_from_probabilities(probs, Thresholds()) == expected
    out = tmp_path_factory.mktemp("four_way_model")
    save_classifier(model, tokenizer, out)
    shutil.copyfile(staged_build.layout.hub_model / "README.md", out / "README.md")
    return out


@pytest.fixture(scope="session")
def four_way_resources(four_way_model_dir, space_dataset_dir, space_reports_dir):
    """What the Space loads with the four-way model: examples of every decision."""
    from space.resources import load_resources
    from space.sources import SpaceConfig

    config = SpaceConfig(
        model_dir=four_way_model_dir, dataset_dir=space_dataset_dir, reports_dir=space_reports_dir
    )
    return load_resources(config)


@pytest.fixture(scope="session")
def space_resources(untrained_model_dir, space_dataset_dir, space_reports_dir):
    from space.resources import load_resources
    from space.sources import SpaceConfig

    config = SpaceConfig(
        model_dir=untrained_model_dir, dataset_dir=space_dataset_dir, reports_dir=space_reports_dir
    )
    return load_resources(config)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def served_resources(request):
    """What the served Space loads: the four-way test model (every decision among the examples),
    or the build named on the command line (`make screenshots` serves build/hub/model)."""
    from space.resources import load_resources
    from space.sources import SpaceConfig

    model_dir = request.config.getoption("--space-model-dir")
    if not model_dir:
        return request.getfixturevalue("four_way_resources")
    defaults = SpaceConfig()
    return load_resources(
        SpaceConfig(
            model_dir=Path(model_dir),
            dataset_dir=Path(
                request.config.getoption("--space-dataset-dir") or defaults.dataset_dir
            ),
            reports_dir=Path(
                request.config.getoption("--space-reports-dir") or defaults.reports_dir
            ),
        )
    )


@pytest.fixture(scope="session")
def space_url(served_resources):
    """The Space served on 127.0.0.1 for the session; closed at the end."""
    from space.app import build_app, launch

    app = build_app(served_resources)
    _, url, _ = launch(
        app, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True
    )
    yield url.rstrip("/")
    app.close()
