"""`publish`: upload the staged folders to the Hugging Face Hub.

For the dataset, the model and the Space, in that order (the Space loads the other two): create
the repo (`private = true` in `[publish]` makes new repos private), then make one commit holding
exactly the staged files, deleting files of an earlier release that are no longer staged, with
a message naming the pipeline version and the data hash; then tag that commit with the release
tag. `--dry-run` prints every file and its target repo and touches no network.

Before anything is uploaded, the staged folders must match `build/reports/stage.json` (same
files, data hash and repo ids: nothing changed since `stage`), and the release tag must be new
on every repo, so a publish never stops half-way for a reason known in advance.

Authentication: the `HF_TOKEN` environment variable, else the token saved by `hf auth login`.
The token is never printed or logged. `HF_ENDPOINT` selects another Hub (a mirror, or a test
server).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import __version__
from pipeline.core.config import BuildLayout, setting
from pipeline.core.io import StageInputError, read_json
from pipeline.hub.cards.release import HubRepos, Release
from pipeline.hub.manifest import MANIFEST, data_hash, folder_hashes, human_size

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("dataset", "model", "space")
REPO_TYPES = {"dataset": "dataset", "model": "model", "space": "space"}
KEEP_REMOTE = (".gitattributes",)  # created by the Hub with every repo; never deleted


@dataclass
class PublishConfig:
    """The `[publish]` table of a preset: the Hub repos of a release and how they are created."""

    org: str = setting("lm-action", "user or organization owning the three repos")
    dataset_name: str = setting("lm-action-commands", "dataset repo name")
    model_name: str = setting("lm-action-bert", "model repo name")
    space_name: str = setting("lm-action-gate", "Space repo name")
    private: bool = setting(False, "create new repos private (an existing repo keeps its visibility)")
    tag: str = setting("v{version}-{data_hash}", "release tag; {version}, {data_hash} (first 12 hex digits)")
    commit_message: str = setting(
        "LM-Action {version}, data {data_hash}", "commit message; {version}, {data_hash} (12 hex digits)"
    )

    def hub_repos(self) -> HubRepos:
        return HubRepos(
            dataset=f"{self.org}/{self.dataset_name}",
            model=f"{self.org}/{self.model_name}",
            space=f"{self.org}/{self.space_name}",
        )


class PublishError(RuntimeError):
    """Publishing cannot start (or stopped): the message says why and what to run."""


@dataclass
class Target:
    """One staged folder and the Hub repo it becomes."""

    kind: str  # dataset, model or space
    repo_id: str
    folder: Path
    files: list[str]  # posix paths inside the folder, sorted

    @property
    def repo_type(self) -> str:
        return REPO_TYPES[self.kind]

    @property
    def size_bytes(self) -> int:
        return sum((self.folder / f).stat().st_size for f in self.files)


@dataclass
class PublishPlan:
    """Everything a publish will do, computed without the network."""

    targets: list[Target]
    release: Release
    commit_message: str
    commit_description: str
    tag: str
    private: bool


@dataclass
class Published:
    """One repo after publishing."""

    kind: str
    repo_id: str
    commit: str
    tag: str
    url: str
    deleted: list[str] = field(default_factory=list)


def plan_publish(layout: BuildLayout, config: PublishConfig, kinds: tuple[str, ...] = KINDS) -> PublishPlan:
    """The targets, commit message and tag of a publish; raises `PublishError` when the staged
    folders do not match the stage manifest."""
    try:
        manifest = read_json(layout.reports / MANIFEST, required_by="stage")
        digest = data_hash(layout.hub_dataset)
    except StageInputError as exc:
        raise PublishError(str(exc)) from exc
    repos = config.hub_repos()
    staged_repos = manifest.get("repos") or {}
    problems = []
    if digest != manifest.get("data_hash"):
        problems.append(f"the dataset's data files changed since stage (data hash {digest[:12]}, staged {str(manifest.get('data_hash'))[:12]})")
    folders = {"dataset": layout.hub_dataset, "model": layout.hub_model, "space": layout.hub_space}
    targets = []
    for kind in kinds:
        repo_id = getattr(repos, kind)
        if staged_repos.get(kind) != repo_id:
            problems.append(f"{kind}: staged for {staged_repos.get(kind)!r}, [publish] names {repo_id!r}")
        staged = (manifest.get("folders") or {}).get(kind, {}).get("files") or {}
        current = folder_hashes(folders[kind]) if folders[kind].is_dir() else {}
        changed = sorted(f for f in set(staged) | set(current) if staged.get(f) != current.get(f))
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            problems.append(f"{kind}: {folders[kind]} differs from the staged files ({shown})")
        targets.append(Target(kind, repo_id, folders[kind], sorted(current)))
    if problems:
        raise PublishError(
            "the staged folders do not match build/reports/stage.json; run `python -m pipeline stage` again:\n"
            + "\n".join(f"  {p}" for p in problems)
        )
    version = str(manifest.get("version") or __version__)
    release = Release(version, digest)
    values = {"version": version, "data_hash": release.short_hash}
    message = config.commit_message.format(**values)
    description = (
        f"Staged by `python -m pipeline stage` (LM-Action {version}).\n\n"
        f"Data hash (SHA-256 over the dataset's data files): {digest}"
    )
    return PublishPlan(targets, release, message, description, config.tag.format(**values), config.private)


def format_plan(plan: PublishPlan) -> list[str]:
    """The dry-run listing: each target repo, then every file it will hold."""
    lines = [
        f"commit message: {plan.commit_message}",
        f"tag: {plan.tag}",
        f"new repos: {'private' if plan.private else 'public'}",
    ]
    for target in plan.targets:
        lines.append(
            f"{target.kind} {target.repo_id} ({target.repo_type} repo) <- {target.folder}: "
            f"{len(target.files)} files, {human_size(target.size_bytes)}"
        )
        lines += [f"  {rel}  {human_size((target.folder / rel).stat().st_size)}" for rel in target.files]
    return lines


def hub_api():
    """An `HfApi` with the user's token (`HF_TOKEN` or `hf auth login`), checked with `whoami`."""
    from huggingface_hub import HfApi, constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise PublishError("HF_HUB_OFFLINE is set (the Makefile sets it): unset it to publish, or use --dry-run")
    token = get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    api = HfApi(token=token)
    user = api.whoami()
    log.info("publishing to %s as %s", api.endpoint, user.get("name", "?"))
    return api


def existing_tags(api, plan: PublishPlan) -> list[str]:
    """The targets (as `kind repo_id`) that already have the release tag."""
    clashes = []
    for target in plan.targets:
        if api.repo_exists(target.repo_id, repo_type=target.repo_type):
            refs = api.list_repo_refs(target.repo_id, repo_type=target.repo_type)
            if plan.tag in {t.name for t in refs.tags}:
                clashes.append(f"{target.kind} {target.repo_id}")
    return clashes


def publish_target(api, target: Target, plan: PublishPlan) -> Published:
    """Create the repo if needed, commit the staged files in one commit, tag it."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    url = api.create_repo(
        target.repo_id,
        repo_type=target.repo_type,
        private=plan.private,
        exist_ok=True,
        space_sdk="gradio" if target.kind == "space" else None,
    )
    remote = api.list_repo_files(target.repo_id, repo_type=target.repo_type)
    staged = set(target.files)
    stale = sorted(f for f in remote if f not in staged and f not in KEEP_REMOTE)
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(target.folder / rel)) for rel in target.files]
    operations += [CommitOperationDelete(path_in_repo=rel) for rel in stale]
    commit = api.create_commit(
        target.repo_id,
        operations,
        commit_message=plan.commit_message,
        commit_description=plan.commit_description,
        repo_type=target.repo_type,
    )
    api.create_tag(target.repo_id, tag=plan.tag, tag_message=plan.commit_message, revision=commit.oid, repo_type=target.repo_type)
    return Published(target.kind, target.repo_id, commit.oid, plan.tag, str(url), stale)


def publish(plan: PublishPlan, api) -> list[Published]:
    """Publish every target of `plan` (see the module docstring)."""
    clashes = existing_tags(api, plan)
    if clashes:
        raise PublishError(
            f"tag {plan.tag} already exists on {', '.join(clashes)}: this release was published; "
            "bump the pipeline version or set publish.tag"
        )
    out = []
    for target in plan.targets:
        log.info("uploading %d files to %s %s", len(target.files), target.repo_type, target.repo_id)
        out.append(publish_target(api, target, plan))
    return out
