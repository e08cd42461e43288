"""`publish`: one tagged commit per repo with exactly the staged files, against a Hub-compatible
server on loopback (`pipeline.testing.hub_server`), and the download paths users take by repo id.

`huggingface_hub` reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` when it is imported, and this test
session runs offline, so publishing and downloading run in subprocesses with their own
environment, exactly as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.__main__ import main as cli
from pipeline.core.config import REPO_ROOT, BuildLayout
from pipeline.core.io import write_json
from pipeline.core.schema import ATTRIBUTES, MODEL_OUTPUTS
from pipeline.hub.cards.release import HubRepos, Release
from pipeline.hub.manifest import MANIFEST, StagedFolder, StageResult, data_hash, folder_hashes, staged_files
from pipeline.hub.publish import PublishConfig, PublishError, plan_publish
from pipeline.testing.hub_server import HubServer
from tests.hub_build import staged_build  # noqa: F401 (fixture)

TOKEN = "hf_test_publish_token_4f1c"
REPOS = PublishConfig().hub_repos()
KINDS = ("dataset", "model", "space")


def hub_env(hub: HubServer | None, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    """A user's environment pointing `huggingface_hub` at `hub`, online, with `token`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_HOME=str(home),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=str(REPO_ROOT),
        TOKENIZERS_PARALLELISM="false",
    )
    if hub is not None:
        env["HF_ENDPOINT"] = hub.endpoint
    if token:
        env["HF_TOKEN"] = token
    return env


def publish(build_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline", "publish", "--build-dir", str(build_dir), "--verbose", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def small_staging(root: Path, files: dict[str, dict[str, bytes]], repos: HubRepos = REPOS) -> BuildLayout:
    """A layout with the given staged files and the manifest `stage` would write for them."""
    layout = BuildLayout(root / "build")
    folders = {"dataset": layout.hub_dataset, "model": layout.hub_model, "space": layout.hub_space}
    for kind, content in files.items():
        for rel, data in content.items():
            (folders[kind] / rel).parent.mkdir(parents=True, exist_ok=True)
            (folders[kind] / rel).write_bytes(data)
    result = StageResult(
        Release("0.0.1", data_hash(layout.hub_dataset)),
        repos,
        {kind: StagedFolder(folders[kind], folder_hashes(folders[kind])) for kind in files},
    )
    write_json(layout.reports / MANIFEST, result.manifest())
    return layout


SMALL = {
    "dataset": {"data/train-00000-of-00001.parquet": b"PAR1 rows", "README.md": b"---\nlicense: mit\n---\n"},
    "model": {"config.json": b"{}", "README.md": b"---\nlicense: mit\n---\n"},
    "space": {"app.py": b"print('hi')\n", "notes/old.txt": b"stale soon", "README.md": b"---\nsdk: gradio\n---\n"},
}


# ---------------------------------------------------------------------------------------------
# Without the network


def test_publish_refuses_folders_changed_since_stage(tmp_path):
    layout = small_staging(tmp_path, SMALL)
    (layout.hub_model / "config.json").write_text('{"edited": true}', encoding="utf-8")
    (layout.hub_space / "extra.py").write_text("", encoding="utf-8")
    with pytest.raises(PublishError) as excinfo:
        plan_publish(layout, PublishConfig())
    message = str(excinfo.value)
    assert "model:" in message and "config.json" in message
    assert "space:" in message and "extra.py" in message
    assert "run `python -m pipeline stage` again" in message


def test_publish_refuses_repo_ids_other_than_the_staged_ones(tmp_path):
    layout = small_staging(tmp_path, SMALL)
    with pytest.raises(PublishError, match="staged for 'lm-action/lm-action-bert', \\[publish\\] names 'someone/lm-action-bert'"):
        plan_publish(layout, PublishConfig(org="someone"))


def test_publish_without_a_token_says_how_to_log_in(tmp_path):
    layout = small_staging(tmp_path, SMALL)
    done = publish(layout.root, hub_env(None, tmp_path / "home", token=None))
    assert done.returncode == 2
    assert "no Hugging Face token: set HF_TOKEN or run `hf auth login`" in done.stderr


@pytest.mark.slow
def test_dry_run_lists_exactly_the_staged_files_and_their_repos(staged_build, capsys):
    # The test session runs with HF_HUB_OFFLINE=1: any request would raise instead of printing.
    assert cli(["publish", "--build-dir", str(staged_build.layout.root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    folders = {"dataset": staged_build.layout.hub_dataset, "model": staged_build.layout.hub_model, "space": staged_build.layout.hub_space}
    listed: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        header = re.match(r"^(dataset|model|space) (\S+) \((\w+) repo\) <- ", line)
        if header:
            current = header.group(1)
            assert header.group(2) == getattr(REPOS, current) and header.group(3) == current
            listed[current] = []
        elif line.startswith("  ") and current:
            listed[current].append(line.split()[0])
    assert listed == {kind: staged_files(folder) for kind, folder in folders.items()}
    digest = data_hash(staged_build.layout.hub_dataset)
    version = json.loads((staged_build.layout.reports / MANIFEST).read_text(encoding="utf-8"))["version"]
    assert f"commit message: LM-Action {version}, data {digest[:12]}\n" in out
    assert f"tag: v{version}-{digest[:12]}\n" in out


# ---------------------------------------------------------------------------------------------
# Against the local Hub


@pytest.fixture(scope="module")
def published(staged_build, tmp_path_factory):
    """The staged build published once to a fresh local Hub; yields (hub, the publish run)."""
    root = tmp_path_factory.mktemp("hub")
    with HubServer(root / "server", token=TOKEN) as hub:
        done = publish(staged_build.layout.root, hub_env(hub, root / "home"))
        assert done.returncode == 0, done.stderr[-3000:]
        yield hub, done


@pytest.mark.slow
def test_each_repo_gets_one_tagged_commit_holding_exactly_the_staged_files(staged_build, published):
    hub, _ = published
    recorded = json.loads((staged_build.layout.reports / MANIFEST).read_text(encoding="utf-8"))
    release = Release(recorded["version"], recorded["data_hash"])
    folders = {"dataset": staged_build.layout.hub_dataset, "model": staged_build.layout.hub_model, "space": staged_build.layout.hub_space}
    for kind in KINDS:
        repo_id, url_type = getattr(REPOS, kind), {"dataset": "datasets", "model": "models", "space": "spaces"}[kind]
        commits = hub.requests_to("POST", f"/api/{url_type}/{repo_id}/commit/")
        assert len(commits) == 1, f"{kind}: {len(commits)} commits"
        header = commits[0].body[0]["value"]
        assert release.version in header["summary"] and release.short_hash in header["summary"]
        assert release.data_hash in header["description"]
        repo = hub.repos[(kind, repo_id)]
        files = hub.files(kind, repo_id)
        assert set(files) == set(staged_files(folders[kind])) | {".gitattributes"}
        assert all(files[rel] == (folders[kind] / rel).read_bytes() for rel in staged_files(folders[kind]))
        tag = PublishConfig().tag.format(version=release.version, data_hash=release.short_hash)
        assert repo.tags == {tag: repo.head.oid}


@pytest.mark.slow
def test_publish_authenticates_with_hf_token_and_never_prints_it(published):
    hub, done = published
    writes = [r for r in hub.requests if r.method == "POST"]
    assert writes and all(r.authorization == f"Bearer {TOKEN}" for r in writes)
    assert TOKEN not in done.stdout and TOKEN not in done.stderr
    created = [r.body for r in hub.requests_to("POST", "/api/repos/create")]
    assert [(c["type"], c["organization"], c["name"]) for c in created] == [
        (kind, *getattr(REPOS, kind).split("/")) for kind in KINDS
    ]
    assert all("visibility" not in c or c["visibility"] == "public" for c in created)


@pytest.mark.slow
def test_published_repos_load_by_repo_id(published, tmp_path):
    hub, _ = published
    card = hub.files("model", REPOS.model)["README.md"].decode("utf-8")
    usage = re.search(r"```python\n(from transformers import pipeline\n.*?)```", card, re.S).group(1)
    script = textwrap.dedent(
        f"""
        import json
        import datasets
        from transformers import AutoModelForSequenceClassification, pipeline

        model = AutoModelForSequenceClassification.from_pretrained({REPOS.model!r})
        classify = pipeline("text-classification", model={REPOS.model!r}, top_k=None)
        dataset = datasets.load_dataset({REPOS.dataset!r})
        usage = {{}}
        exec({usage!r}, usage)
        print(json.dumps({{
            "id2label": model.config.id2label,
            "labels": sorted(d["label"] for d in classify(["turn off the porch light"])[0]),
            "splits": {{name: len(split) for name, split in dataset.items()}},
            "risk": dataset["test"].features["risk"].names,
            "decision": usage["decide"]("turn off the porch light"),
        }}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], env=hub_env(hub, tmp_path / "home", token=None), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(result["labels"]) == sorted(MODEL_OUTPUTS)
    assert list(result["id2label"].values()) == list(MODEL_OUTPUTS)
    assert set(result["splits"]) == {"train", "validation", "test"} and all(result["splits"].values())
    assert result["risk"] == list(next(a for a in ATTRIBUTES if a.name == "risk").values)
    assert result["decision"] in ("allow", "confirm", "cannot_do", "block")
    downloads = [r.path for r in hub.requests if "/resolve/" in r.path]
    assert any(p.startswith(f"/{REPOS.model}/resolve/") for p in downloads)
    assert any(p.startswith(f"/datasets/{REPOS.dataset}/resolve/") for p in downloads)


@pytest.mark.slow
def test_publishing_the_same_release_again_is_refused_before_any_upload(staged_build, published, tmp_path):
    hub, _ = published
    before = len(hub.requests_to("POST", "/commit/"))
    done = publish(staged_build.layout.root, hub_env(hub, tmp_path / "home"))
    assert done.returncode == 2
    assert "already exists on dataset lm-action/lm-action-commands, model lm-action/lm-action-bert, space lm-action/lm-action-gate" in done.stderr
    assert len(hub.requests_to("POST", "/commit/")) == before


def test_a_new_release_deletes_files_no_longer_staged_and_private_repos_stay_private(tmp_path):
    layout = small_staging(tmp_path, SMALL)
    with HubServer(tmp_path / "server", token=TOKEN) as hub:
        env = hub_env(hub, tmp_path / "home")
        first = publish(layout.root, env, "--only", "space", "--set", "publish.private=true")
        assert first.returncode == 0, first.stderr[-3000:]
        assert hub.repos[("space", REPOS.space)].private
        assert hub.requests_to("POST", "/api/repos/create")[0].body["sdk"] == "gradio"
        (layout.hub_space / "notes" / "old.txt").unlink()
        small_staging(tmp_path, {**SMALL, "space": {k: v for k, v in SMALL["space"].items() if k != "notes/old.txt"}})
        second = publish(layout.root, env, "--only", "space", "--set", "publish.tag=v0.0.1-second")
        assert second.returncode == 0, second.stderr[-3000:]
        assert "deleted 1 stale file(s)" in second.stdout
        assert set(hub.files("space", REPOS.space)) == {".gitattributes", "app.py", "README.md"}
        assert set(hub.repos[("space", REPOS.space)].tags) == {"v0.0.1-" + data_hash(layout.hub_dataset)[:12], "v0.0.1-second"}
        assert not hub.requests_to("POST", "/api/datasets/")
