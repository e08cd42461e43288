"""Start-up from Hub repo ids (`MODEL_ID`, `DATASET_ID`) against the Hub-compatible server on
loopback (`pipeline.testing.hub_server`): the Space names each repo with the revision it loaded.

`huggingface_hub` reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` when it is imported and this session
runs offline, so the Space loads in a subprocess with a user's online environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.core.config import REPO_ROOT
from pipeline.core.decision import DECISIONS
from pipeline.core.schema import ID2LABEL, LABEL2ID
from pipeline.testing.hub_server import HubServer
from tests.train_data import tiny_bert_config

TOKEN = "hf_test_space_token_8d2e"
MODEL_REPO, DATASET_REPO = "tester/lm-action-tiny", "tester/lm-action-commands"


def tiny_model(backbone_dir: Path, out: Path) -> Path:
    """A two-layer seven-output BERT with the backbone's tokenizer: small enough to upload."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    config = tiny_bert_config(
        tokenizer.vocab_size,
        num_labels=len(ID2LABEL),
        id2label=dict(ID2LABEL),
        label2id=dict(LABEL2ID),
        problem_type="multi_label_classification",
    )
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def user_env(hub: HubServer, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_HOME=str(home),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_ENDPOINT=hub.endpoint,
        HF_TOKEN=TOKEN,
        PYTHONPATH=str(REPO_ROOT),
        TOKENIZERS_PARALLELISM="false",
        **extra,
    )
    return env


def run_python(script: str, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


UPLOAD = """
    import json
    from huggingface_hub import HfApi
    api = HfApi()
    for repo_type, repo_id, folder in {uploads!r}:
        api.create_repo(repo_id, repo_type=repo_type)
        api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type=repo_type)
    print(json.dumps({{"done": True}}))
"""

LOAD = """
    import json
    from space.resources import load_resources
    from space.sources import SpaceConfig
    res = load_resources(SpaceConfig.from_env())
    print(json.dumps({
        "model": [res.model_source.kind, res.model_source.ref, res.model_source.revision,
                  res.model_source.describe()],
        "dataset": [res.dataset.source.kind, res.dataset.source.ref, res.dataset.source.revision,
                    res.dataset.source.url],
        "splits": {name: len(frame) for name, frame in res.dataset.splits.items()},
        "examples": [[e.decision, res.classifier.classify(e.text).decision]
                     for e in res.examples.examples],
        "missing": res.examples.missing,
        "decision": res.classifier.classify("turn off the porch light").decision,
    }))
"""


@pytest.mark.slow
def test_space_loads_hub_repos_and_names_their_revisions(
    tmp_path, backbone_dir, dataset_writer, space_commands
):
    model_dir = tiny_model(backbone_dir, tmp_path / "model")
    dataset_dir = dataset_writer(tmp_path / "dataset", {"test": space_commands})
    uploads = [("model", MODEL_REPO, str(model_dir)), ("dataset", DATASET_REPO, str(dataset_dir))]
    with HubServer(tmp_path / "hub", TOKEN) as hub:
        run_python(UPLOAD.format(uploads=uploads), user_env(hub, tmp_path / "up"))
        heads = {kind: hub.repos[(kind, repo)].head.oid for kind, repo, _ in uploads}
        env = user_env(
            hub,
            tmp_path / "home",
            MODEL_ID=MODEL_REPO,
            DATASET_ID=DATASET_REPO,
            LM_ACTION_MODEL_DIR=str(tmp_path / "no-local-model"),
        )
        result = run_python(LOAD, env)
    assert result["model"][:3] == ["hub", MODEL_REPO, heads["model"]]
    assert f"https://huggingface.co/{MODEL_REPO}" in result["model"][3]
    assert result["dataset"] == [
        "hub",
        DATASET_REPO,
        heads["dataset"],
        f"https://huggingface.co/datasets/{DATASET_REPO}",
    ]
    assert result["splits"] == {"test": len(space_commands)}
    # the chips name what this model decides for them, and every decision is shown or named
    assert result["examples"] and all(shown == decided for shown, decided in result["examples"])
    assert {shown for shown, _ in result["examples"]} | set(result["missing"]) == set(DECISIONS)
    assert result["decision"] in DECISIONS
