"""A small Hugging Face Hub-compatible server on loopback, for tests.

It records every request `huggingface_hub` makes and keeps the repos they create, so uploads
(whoami, create repo, YAML validation, preupload, commit, tag) and downloads by repo id
(`from_pretrained`, `pipeline`, `load_dataset`, `snapshot_download` with `HF_ENDPOINT` pointing
here) run for real with no internet. Why not olah (the self-hosted Hub mirror): offline, olah
serves files of local git mirrors, but answers a probe for a missing file on a branch (`main`)
with 401 RepoNotFound instead of 404 EntryNotFound, because it resolves branch names only from
its proxy cache; `transformers` probes optional files (`adapter_config.json`) and then gives up.

Endpoints follow the Hub's paths, status codes and headers (`X-Repo-Commit`, `ETag`,
`X-Error-Code`). Every preupload is answered "regular": file contents travel base64 inside the
commit, so no LFS or Xet storage is involved. File contents are kept on disk under `root`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    message: str
    description: str
    files: dict[str, str]  # path -> blob sha1


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None
    commits: list[Commit] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # tag -> commit oid
    tag_messages: dict[str, str] = field(default_factory=dict)

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def resolve(self, revision: str) -> Commit | None:
        """A commit from a branch (`main`), tag, full or abbreviated commit id."""
        if revision == "main":
            return self.head
        if revision in self.tags:
            return self.commit(self.tags[revision])
        matches = [c for c in self.commits if c.oid.startswith(revision)] if len(revision) >= 7 else []
        return matches[0] if len(matches) == 1 else None

    def commit(self, oid: str) -> Commit:
        return next(c for c in self.commits if c.oid == oid)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: Any = None  # JSON body, or the list of NDJSON items of a commit (file contents left out)


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class HubServer:
    """Start with `with HubServer(root, token="hf_test") as hub:`; `hub.endpoint` is the URL for
    `HF_ENDPOINT`, `hub.requests` the requests made so far, `hub.repos` the repos."""

    def __init__(self, root: Path, token: str, user: str = "tester"):
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.token, self.user = token, user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- state --------------------------------------------------------------------------------

    def blob(self, sha: str) -> bytes:
        return (self.blobs / sha).read_bytes()

    def store(self, content: bytes) -> str:
        sha = git_blob_sha1(content)
        path = self.blobs / sha
        if not path.exists():
            path.write_bytes(content)
        return sha

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a revision (for assertions)."""
        repo = self.repos[(repo_type, repo_id)]
        commit = repo.resolve(revision)
        return {path: self.blob(sha) for path, sha in commit.files.items()}

    def requests_to(self, method: str, fragment: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and fragment in r.path]

    def _new_commit(self, repo: Repo, files: dict[str, str], message: str, description: str) -> Commit:
        parent = repo.commits[-1].oid if repo.commits else ""
        listing = "\n".join(f"{p}:{s}" for p, s in sorted(files.items()))
        oid = hashlib.sha1(f"{parent}\n{message}\n{listing}\n{len(repo.commits)}".encode()).hexdigest()
        commit = Commit(oid, message, description, dict(files))
        repo.commits.append(commit)
        return commit

    # -- request handling ---------------------------------------------------------------------

    def authorized(self, authorization: str | None) -> bool:
        return authorization == f"Bearer {self.token}"

    def repo(self, repo_type: str, repo_id: str, authorization: str | None, write: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if write and not self.authorized(authorization):
            raise HubError(401, None, "Invalid credentials in Authorization header")
        if repo is None or (repo.private and not self.authorized(authorization)):
            raise HubError(404 if self.authorized(authorization) else 401, "RepoNotFound", "Repository not found")
        return repo

    def revision(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def create_repo(self, body: dict, authorization: str | None) -> tuple[int, dict]:
        if not self.authorized(authorization):
            raise HubError(401, None, "Invalid credentials in Authorization header")
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.user}/{body['name']}"
        url = f"{self.endpoint}/{PREFIXES[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            return 409, {"error": f"You already created this {repo_type} repo", "url": url}
        if repo_type == "space" and not body.get("sdk"):
            raise HubError(400, None, "sdk is required for Spaces")
        private = body.get("visibility") == "private" or bool(body.get("private"))
        repo = Repo(repo_type, repo_id, private, body.get("sdk"))
        self._new_commit(repo, {".gitattributes": self.store(GITATTRIBUTES)}, "initial commit", "")
        self.repos[(repo_type, repo_id)] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def info(self, repo: Repo, commit: Commit) -> dict:
        card = {}
        if "README.md" in commit.files:
            text = self.blob(commit.files["README.md"]).decode("utf-8")
            if text.startswith("---"):
                card = yaml.safe_load(text.split("---", 2)[1]) or {}
        return {
            "_id": repo.repo_id,
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "cardData": card,
            "sdk": repo.sdk,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "siblings": [
                {"rfilename": p, "size": (self.blobs / s).stat().st_size, "blobId": s} for p, s in sorted(commit.files.items())
            ],
        }

    def tree(self, commit: Commit, path: str, recursive: bool) -> list[dict]:
        prefix = path.strip("/")
        entries: dict[str, dict] = {}
        for file_path, sha in sorted(commit.files.items()):
            if prefix and not file_path.startswith(prefix + "/"):
                continue
            rest = file_path[len(prefix) + 1 :] if prefix else file_path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(([prefix] if prefix else []) + parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "path": folder, "size": 0})
            if recursive or len(parts) == 1:
                entries[file_path] = {"type": "file", "oid": sha, "size": (self.blobs / sha).stat().st_size, "path": file_path}
        if prefix and not entries and prefix not in commit.files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on this revision")
        return list(entries.values())

    def paths_info(self, commit: Commit, paths: list[str]) -> list[dict]:
        out = []
        folders = {"/".join(p.split("/")[:i]) for p in commit.files for i in range(1, p.count("/") + 1)}
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                sha = commit.files[path]
                out.append({"type": "file", "oid": sha, "size": (self.blobs / sha).stat().st_size, "path": path})
            elif path in folders:
                out.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "path": path, "size": 0})
        return out

    def preupload(self, commit: Commit, body: dict) -> dict:
        return {
            "files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": commit.files.get(f["path"])}
                for f in body.get("files", [])
            ],
            "commitOid": commit.oid,
        }

    def commit(self, repo: Repo, revision: str, items: list[dict]) -> dict:
        if revision != "main":
            raise HubError(400, None, "this test server commits to main only")
        header = items[0]["value"] if items and items[0].get("key") == "header" else {}
        files = dict(repo.head.files)
        for item in items[1:]:
            key, value = item.get("key"), item.get("value") or {}
            if key == "file":
                files[value["path"]] = self.store(base64.b64decode(value["content"]))
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {value['path']}")
                del files[value["path"]]
            elif key == "deletedFolder":
                files = {p: s for p, s in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise HubError(400, None, f"this test server does not take {key!r} operations")
        commit = self._new_commit(repo, files, header.get("summary", ""), header.get("description", ""))
        url = f"{self.endpoint}/{PREFIXES[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return {"commitUrl": url, "commitOid": commit.oid, "success": True, "pullRequestUrl": None}

    def tag(self, repo: Repo, revision: str, body: dict) -> tuple[int, dict]:
        commit = self.revision(repo, revision)
        name = body["tag"]
        if name in repo.tags:
            return 409, {"error": f"Tag {name} already exists"}
        repo.tags[name] = commit.oid
        repo.tag_messages[name] = body.get("message", "")
        return 200, {}

    def refs(self, repo: Repo) -> dict:
        return {
            "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head.oid}],
            "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": oid} for t, oid in sorted(repo.tags.items())],
            "converts": [],
        }


def _validate_yaml(body: dict) -> tuple[int, dict]:
    content = body.get("content") or ""
    if not content.startswith("---"):
        return 200, {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
    try:
        parts = content.split("---", 2)
        meta = yaml.safe_load(parts[1])
    except (IndexError, yaml.YAMLError) as exc:
        return 400, {"errors": [{"message": f"invalid YAML: {exc}"}]}
    if not isinstance(meta, dict):
        return 400, {"errors": [{"message": "metadata must be a YAML mapping"}]}
    return 200, {"warnings": []}


def _handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None, body: bytes | None = None) -> None:
            data = body if body is not None else (b"" if payload is None else json.dumps(payload).encode())
            self.send_response(status)
            if body is None:
                self.send_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            segments = [unquote(s) for s in url.path.strip("/").split("/")]
            query = parse_qs(url.query)
            auth = self.headers.get("Authorization")
            raw = self._body() if self.command in ("POST", "PUT") else b""
            record = RecordedRequest(self.command, url.path, query, auth)
            with hub._lock:
                hub.requests.append(record)
            try:
                with hub._lock:
                    self._route(segments, query, auth, raw, record)
            except HubError as exc:
                headers = {"X-Error-Message": exc.message}
                if exc.code:
                    headers["X-Error-Code"] = exc.code
                self._send(exc.status, {"error": exc.message}, headers)

        def _route(self, seg: list[str], query: dict, auth: str | None, raw: bytes, record: RecordedRequest) -> None:
            method = self.command
            if seg[:1] == ["api"]:
                return self._api(seg[1:], query, auth, raw, record)
            repo_type = "model"
            if seg and seg[0] in TYPES:
                repo_type, seg = TYPES[seg[0]], seg[1:]
            if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
                repo = hub.repo(repo_type, f"{seg[0]}/{seg[1]}", auth)
                commit = hub.revision(repo, seg[3])
                return self._file(commit, "/".join(seg[4:]))
            raise HubError(404, None, f"no route for {method} {self.path}")

        def _file(self, commit: Commit, path: str) -> None:
            sha = commit.files.get(path)
            if sha is None:
                raise HubError(404, "EntryNotFound", f"{path} does not exist on this revision")
            content = hub.blob(sha)
            headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{sha}"', "Accept-Ranges": "bytes"}
            status = 200
            requested = self.headers.get("Range")
            if requested and requested.startswith("bytes=") and self.command == "GET":
                start_s, _, end_s = requested[6:].partition("-")
                start = int(start_s or 0)
                end = int(end_s) if end_s else len(content) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
                content, status = content[start : end + 1], 206
            if self.command == "HEAD":
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                return
            self._send(status, headers=headers, body=content)

        def _api(self, seg: list[str], query: dict, auth: str | None, raw: bytes, record: RecordedRequest) -> None:
            method = self.command
            if seg == ["whoami-v2"]:
                if not hub.authorized(auth):
                    raise HubError(401, None, "Invalid credentials in Authorization header")
                return self._send(200, {"type": "user", "name": hub.user, "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})
            if seg == ["repos", "create"] and method == "POST":
                record.body = json.loads(raw or b"{}")
                status, payload = hub.create_repo(record.body, auth)
                return self._send(status, payload)
            if seg == ["validate-yaml"] and method == "POST":
                record.body = json.loads(raw or b"{}")
                return self._send(*_validate_yaml(record.body))
            if len(seg) < 3 or seg[0] not in TYPES:
                raise HubError(404, None, f"no route for {method} {self.path}")
            repo_type, repo_id, rest = TYPES[seg[0]], f"{seg[1]}/{seg[2]}", seg[3:]
            if method in ("GET", "HEAD") and (not rest or rest[0] == "revision"):
                repo = hub.repo(repo_type, repo_id, auth)
                commit = hub.revision(repo, rest[1] if len(rest) > 1 else "main")
                return self._send(200, hub.info(repo, commit))
            if rest == ["refs"]:
                return self._send(200, hub.refs(hub.repo(repo_type, repo_id, auth)))
            if rest and rest[0] == "tree" and len(rest) >= 2:
                repo = hub.repo(repo_type, repo_id, auth)
                recursive = (query.get("recursive") or ["false"])[0].lower() == "true"
                return self._send(200, hub.tree(hub.revision(repo, rest[1]), "/".join(rest[2:]), recursive))
            if rest and rest[0] == "paths-info" and method == "POST":
                repo = hub.repo(repo_type, repo_id, auth)
                form = parse_qs(raw.decode("utf-8"))
                record.body = form
                return self._send(200, hub.paths_info(hub.revision(repo, rest[1]), form.get("paths", [])))
            if rest and rest[0] == "preupload" and method == "POST":
                repo = hub.repo(repo_type, repo_id, auth, write=True)
                record.body = json.loads(raw or b"{}")
                return self._send(200, hub.preupload(hub.revision(repo, rest[1]), record.body))
            if rest and rest[0] == "commit" and method == "POST":
                repo = hub.repo(repo_type, repo_id, auth, write=True)
                items = [json.loads(line) for line in raw.splitlines() if line.strip()]
                record.body = [
                    {"key": i.get("key"), "path": (i.get("value") or {}).get("path"), **({"value": i["value"]} if i.get("key") == "header" else {})}
                    for i in items
                ]
                return self._send(200, hub.commit(repo, rest[1], items))
            if rest and rest[0] == "tag" and method == "POST":
                repo = hub.repo(repo_type, repo_id, auth, write=True)
                record.body = json.loads(raw or b"{}")
                return self._send(*hub.tag(repo, rest[1], record.body))
            raise HubError(404, None, f"no route for {method} {self.path}")

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    return Handler
