"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only).

Point the real ``huggingface_hub`` client at it with ``HF_ENDPOINT`` (set *before*
``huggingface_hub`` is imported: the endpoint is read at import time) or with the
``endpoint=`` argument that most client functions accept.

Supported (models, datasets and spaces):

* ``POST /api/repos/create``                                 create_repo (409 + url if it exists; a Space
                                                             needs an ``sdk``, which space_info returns)
* ``POST /api/validate-yaml``                                README metadata check (always valid)
* ``GET  /api/whoami-v2``                                    fake user "tester"
* ``GET  /api/{type}s/{ns}/{name}[/revision/{rev}]``         model_info / repo_info
* ``GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]``      list_repo_tree / list_repo_files
* ``GET  /api/{type}s/{ns}/{name}/refs``                     list_repo_refs
* ``GET  /api/{type}s/{ns}/{name}/commits/{rev}``            list_repo_commits
* ``POST /api/{type}s/{ns}/{name}/paths-info/{rev}``         get_paths_info
* ``POST /api/{type}s/{ns}/{name}/preupload/{rev}``          upload step 1: always "regular" mode
* ``POST /api/{type}s/{ns}/{name}/commit/{rev}``             upload step 2: NDJSON commit
                                                             (``?create_pr=1``: a pull request, ref ``refs/pr/N``)
* ``POST /api/{type}s/{ns}/{name}/branch/{branch}``          create_branch (409 if it exists)
* ``HEAD|GET /[{type}s/]{ns}/{name}/resolve/{rev}/{path}``   hf_hub_download (Range supported)

Every file is uploaded in "regular" mode (base64 inside the commit payload), so
the client never uses Xet or LFS and needs no other endpoint.

Storage layout under ``root`` (one directory per repo)::

    {type}s/{ns}/{name}/repo.json     branches, tags and every commit's full file
                                      manifest {path: {"oid", "size"}}, oldest first
    {type}s/{ns}/{name}/blobs/{oid}   file contents, addressed by git blob sha1

ETags and oids are git blob sha1s, exactly like regular (non-LFS) files on the Hub.
Errors carry the ``X-Error-Code`` header the client maps to exceptions:
``RepoNotFound`` -> RepositoryNotFoundError, ``RevisionNotFound`` ->
RevisionNotFoundError, ``EntryNotFound`` -> RemoteEntryNotFoundError; a 400 becomes
BadRequestError. Ids, revisions and paths with ``..`` (or other traversal tricks)
are refused with 400; files are only ever read from ``blobs/`` by a hex oid.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote

DEFAULT_USER = "tester"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# Same rules as the Hub: letters, digits, "-", "_", "."; no "--" or ".." inside.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_SHA_RE = re.compile(r"[0-9a-f]{40}")
# Content of the "initial commit" every new repo gets, like on the real Hub.
_INITIAL_GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
)


class HubError(Exception):
    """An HTTP error answered as JSON ``{"error": message}`` plus Hub error headers."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        if code is not None:
            self.headers["X-Error-Code"] = code


@dataclass
class Request:
    method: str
    path: str  # raw (still URL-quoted) path, without query string
    query: dict[str, list[str]]
    headers: Any
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as err:
            raise HubError(400, f"Invalid JSON body: {err}") from err


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), dict(headers or {}))


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub uses as oid/ETag for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    """Timestamp in the format the client parses: 2024-01-31T12:00:00.000Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------- validation


def check_name(part: str, what: str = "repo id") -> str:
    if not _NAME_RE.fullmatch(part) or ".." in part or "--" in part:
        raise HubError(400, f"Invalid {what}: {part!r}")
    return part


def check_revision(rev: str) -> str:
    if not rev or rev.startswith("/") or any(c in rev for c in "\\\0") or ".." in rev.split("/"):
        raise HubError(400, f"Invalid revision: {rev!r}")
    return rev


def check_path(path: str) -> str:
    """A file path inside a repo: relative, "/"-separated, no "." / ".." / ".git" segments."""
    parts = path.split("/")
    if (
        not path
        or any(c in path for c in "\\\0")
        or any(p in ("", ".", "..", ".git") for p in parts)
    ):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


# ---------------------------------------------------------------- storage


class RepoStore:
    """Repos on disk. Callers must hold ``lock`` around read-modify-write sequences."""

    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.RLock()

    def _dir(self, repo_type: str, repo_id: str) -> Path:
        ns, name = repo_id.split("/")
        return self.root / f"{repo_type}s" / check_name(ns) / check_name(name)

    def load(self, repo_type: str, repo_id: str) -> dict | None:
        path = self._dir(repo_type, repo_id) / "repo.json"
        return json.loads(path.read_text()) if path.exists() else None

    def save(self, state: dict) -> None:
        path = self._dir(state["type"], state["id"]) / "repo.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)  # atomic: readers never see a half-written file

    def put_blob(self, state: dict, data: bytes) -> dict:
        oid = git_blob_sha1(data)
        path = self._dir(state["type"], state["id"]) / "blobs" / oid
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return {"oid": oid, "size": len(data)}

    def get_blob(self, state: dict, oid: str) -> bytes:
        assert _SHA_RE.fullmatch(oid), oid  # oids come from our own manifests
        return (self._dir(state["type"], state["id"]) / "blobs" / oid).read_bytes()


def find_commit(state: dict, sha: str) -> dict:
    for commit in state["commits"]:
        if commit["id"] == sha:
            return commit
    raise KeyError(sha)


def resolve_revision(state: dict, rev: str) -> dict:
    """Branch, tag or full commit sha -> commit dict (404 RevisionNotFound otherwise)."""
    check_revision(rev)
    sha = state["branches"].get(rev) or state["tags"].get(rev)
    if sha is None and (pr := re.fullmatch(r"refs/pr/(\d+)", rev)):
        sha = state.get("prs", {}).get(pr.group(1))
    if sha is None and _SHA_RE.fullmatch(rev):
        sha = rev
    try:
        return find_commit(state, sha or "")
    except KeyError:
        raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound") from None


def tree_entries(files: dict[str, dict], path: str, recursive: bool) -> list[dict]:
    """Entries like the Hub's /tree endpoint: files plus (synthetic) directories."""
    prefix = f"{path.rstrip('/')}/" if path else ""
    entries: dict[str, dict] = {}

    def add_dir(dir_path: str) -> None:
        inside = sorted(f"{p}:{i['oid']}" for p, i in files.items() if p.startswith(dir_path + "/"))
        oid = hashlib.sha1("\n".join(inside).encode()).hexdigest()
        entries[dir_path] = {"type": "directory", "oid": oid, "size": 0, "path": dir_path}

    for file_path, info in files.items():
        if not file_path.startswith(prefix):
            continue
        parts = file_path[len(prefix) :].split("/")
        dirs = [prefix + "/".join(parts[:i]) for i in range(1, len(parts))]
        for dir_path in dirs if recursive else dirs[:1]:
            add_dir(dir_path)
        if recursive or len(parts) == 1:
            entries[file_path] = {"type": "file", "oid": info["oid"], "size": info["size"], "path": file_path}
    if path and not entries:
        raise HubError(404, f"Entry not found: {path}", code="EntryNotFound")
    return [entries[p] for p in sorted(entries)]


# ---------------------------------------------------------------- server


class HubServer:
    """In-process Hub. ``start()`` returns the endpoint URL; ``stop()`` shuts it down.

    Test knobs:
      fail_mode      None (normal), "500" (answer every request with HTTP 500),
                     "stall" (wait ``stall_seconds`` before answering normally),
                     "stall-upload" (a commit request: read half of its body, then wait
                     ``stall_seconds`` and close without answering) or
                     "stall-download" (a file download: send the headers and half of
                     the file, then wait and close; a resumed download (Range) gets the
                     headers only). A stalled request is released early when fail_mode
                     changes or on stop().
      requests       [(method, raw path without query)] of every request received.
      user_agents    the User-Agent header of every request received.
    """

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="hub-server-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = RepoStore(self.root)
        self.endpoint = ""
        self.fail_mode: str | None = None
        self.stall_seconds: float = 30.0
        self.requests: list[tuple[str, str]] = []
        self.user_agents: list[str] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._routes = self._build_routes()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        assert self._httpd is None, "already started"
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
        )
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # releases stalled requests
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> "HubServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ helpers for test asserts

    def commits(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """Shas of all commits of the repo (every branch), oldest first."""
        with self.store.lock:
            state = self.store.load(repo_type, repo_id)
        if state is None:
            raise KeyError(repo_id)
        return [c["id"] for c in state["commits"]]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """{path: content} of the repo at ``revision``."""
        with self.store.lock:
            state = self.store.load(repo_type, repo_id)
            if state is None:
                raise KeyError(repo_id)
            commit = resolve_revision(state, revision)
            return {p: self.store.get_blob(state, i["oid"]) for p, i in commit["files"].items()}

    # ------------------------------------------------------------ request plumbing

    def _build_routes(self) -> list[tuple[set[str], re.Pattern, Callable[..., Response]]]:
        repo = r"/api/(models|datasets|spaces)/([^/]+)/([^/]+)"
        seg = r"([^/]+)"
        table = [
            ({"POST"}, r"/api/repos/create", self._create_repo),
            ({"POST"}, r"/api/validate-yaml", self._validate_yaml),
            ({"GET"}, r"/api/whoami-v2", self._whoami),
            ({"GET"}, repo, self._repo_info),
            ({"GET"}, rf"{repo}/revision/{seg}", self._repo_info),
            ({"GET"}, rf"{repo}/tree/{seg}(?:/(.*))?", self._tree),
            ({"GET"}, rf"{repo}/refs", self._refs),
            ({"GET"}, rf"{repo}/commits/{seg}", self._list_commits),
            ({"POST"}, rf"{repo}/paths-info/{seg}", self._paths_info),
            ({"POST"}, rf"{repo}/preupload/{seg}", self._preupload),
            ({"POST"}, rf"{repo}/commit/{seg}", self._commit),
            ({"POST"}, rf"{repo}/branch/{seg}", self._create_branch),
            ({"GET", "HEAD"}, r"/(?:(datasets|spaces)/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", self._resolve),
        ]
        return [(methods, re.compile(pattern), handler) for methods, pattern, handler in table]

    def stall(self) -> None:
        """Wait ``stall_seconds``, or until fail_mode changes or the server stops."""
        mode, deadline = self.fail_mode, time.monotonic() + self.stall_seconds
        while self.fail_mode == mode and time.monotonic() < deadline:
            if self._stopping.wait(0.02):
                break

    def handle(self, req: Request) -> Response:
        """Entry point for every request (called from the handler threads)."""
        self.requests.append((req.method, req.path))
        self.user_agents.append(req.headers.get("User-Agent", ""))
        if self.fail_mode == "500":
            return json_response({"error": "Internal Error (HubServer fail_mode='500')"}, status=500)
        if self.fail_mode == "stall":
            self.stall()
        try:
            for methods, pattern, handler in self._routes:
                match = pattern.fullmatch(req.path)
                if match and req.method in methods:
                    args = [unquote(g) if g is not None else None for g in match.groups()]
                    return handler(req, *args)
            raise HubError(404, f"Not found: {req.method} {req.path}")
        except HubError as err:
            return json_response({"error": err.message}, err.status, {"X-Error-Message": err.message, **err.headers})
        except Exception:  # a bug in this server: make it visible in the client's error
            traceback.print_exc(file=sys.stderr)
            return json_response({"error": "HubServer bug:\n" + traceback.format_exc()}, status=500)

    def _load_repo(self, type_plural: str | None, ns: str, name: str) -> dict:
        repo_type = REPO_TYPES[type_plural or "models"]
        state = self.store.load(repo_type, f"{check_name(ns)}/{check_name(name)}")
        if state is None:
            raise HubError(404, "Repository not found", code="RepoNotFound")
        return state

    def _repo_url(self, state: dict) -> str:
        return f"{self.endpoint}/{URL_PREFIXES[state['type']]}{state['id']}"

    def _new_commit(self, state: dict, parent: dict | None, files: dict, title: str, message: str = "") -> dict:
        date = _now()
        payload = json.dumps([parent and parent["id"], files, title, message, date, time.monotonic_ns()])
        commit = {
            "id": hashlib.sha1(payload.encode()).hexdigest(),
            "parent": parent and parent["id"],
            "title": title,
            "message": message,
            "date": date,
            "files": files,
        }
        state["commits"].append(commit)
        return commit

    # ------------------------------------------------------------ endpoints

    def _create_repo(self, req: Request) -> Response:
        body = req.json()
        name, org = str(body.get("name") or ""), body.get("organization")
        if "/" in name:
            org, name = name.split("/", 1)
        repo_id = f"{check_name(org or DEFAULT_USER, 'namespace')}/{check_name(name, 'repo name')}"
        repo_type = body.get("type") or "model"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"Invalid repo type: {repo_type!r}")
        if repo_type == "space" and body.get("sdk") not in ("gradio", "docker", "static"):
            raise HubError(400, "A Space needs an sdk: gradio, docker or static")  # as the Hub answers
        with self.store.lock:
            state = self.store.load(repo_type, repo_id)
            if state is not None:  # the client treats 409 as success when exist_ok=True (it reads "url")
                msg = f"You already created this {repo_type} repo"
                return json_response({"error": msg, "url": self._repo_url(state)}, 409, {"X-Error-Message": msg})
            private = bool(body.get("private")) or body.get("visibility") == "private"
            state = {"id": repo_id, "type": repo_type, "private": private, "createdAt": _now(),
                     "branches": {}, "tags": {}, "commits": []}  # fmt: skip
            if repo_type == "space":
                state["sdk"] = body["sdk"]
            gitattributes = self.store.put_blob(state, _INITIAL_GITATTRIBUTES)
            first = self._new_commit(state, None, {".gitattributes": gitattributes}, "initial commit")
            state["branches"]["main"] = first["id"]
            self.store.save(state)
        return json_response({"url": self._repo_url(state), "name": repo_id, "id": repo_id})

    def _validate_yaml(self, req: Request) -> Response:
        return json_response({"errors": [], "warnings": []})

    def _whoami(self, req: Request) -> Response:
        return json_response({
            "type": "user", "id": "0" * 24, "name": DEFAULT_USER, "fullname": "Test User",
            "email": None, "emailVerified": False, "isPro": False, "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
        })  # fmt: skip

    def _repo_info(self, req: Request, type_plural: str, ns: str, name: str, rev: str = "main") -> Response:
        with self.store.lock:
            state = self._load_repo(type_plural, ns, name)
            commit = resolve_revision(state, rev)
        files = commit["files"]
        info = {
            "_id": hashlib.sha1(state["id"].encode()).hexdigest()[:24],
            "id": state["id"],
            "author": ns,
            "sha": commit["id"],
            "lastModified": commit["date"],
            "createdAt": state["createdAt"],
            "private": state["private"],
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [{"rfilename": p, "size": files[p]["size"], "blobId": files[p]["oid"]} for p in sorted(files)],
        }
        if state["type"] == "model":
            info["modelId"] = state["id"]
        if state["type"] == "space":
            info["sdk"] = state.get("sdk")
        return json_response(info)

    def _tree(self, req: Request, type_plural: str, ns: str, name: str, rev: str, path: str | None) -> Response:
        path = check_path(path.strip("/")) if path and path.strip("/") else ""
        recursive = req.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        with self.store.lock:
            commit = resolve_revision(self._load_repo(type_plural, ns, name), rev)
        # A single page, no "Link: <next>" header => the client does not paginate.
        return json_response(tree_entries(commit["files"], path, recursive))

    def _refs(self, req: Request, type_plural: str, ns: str, name: str) -> Response:
        with self.store.lock:
            state = self._load_repo(type_plural, ns, name)

        def refs(kind: str, names: dict[str, str]) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(names.items())]

        return json_response({
            "branches": refs("heads", state["branches"]), "tags": refs("tags", state["tags"]),
            "converts": [], "pullRequests": refs("pr", state.get("prs", {})),
        })  # fmt: skip

    def _list_commits(self, req: Request, type_plural: str, ns: str, name: str, rev: str) -> Response:
        with self.store.lock:
            state = self._load_repo(type_plural, ns, name)
            commit = resolve_revision(state, rev)
            history = []
            while commit is not None:  # newest first, following parents
                history.append({
                    "id": commit["id"], "title": commit["title"], "message": commit["message"],
                    "date": commit["date"], "authors": [{"user": DEFAULT_USER, "avatar": None}],
                })  # fmt: skip
                commit = find_commit(state, commit["parent"]) if commit["parent"] else None
        return json_response(history)

    def _paths_info(self, req: Request, type_plural: str, ns: str, name: str, rev: str) -> Response:
        form = parse_qs(req.body.decode())  # sent form-encoded: paths=a&paths=b&expand=False
        with self.store.lock:
            files = resolve_revision(self._load_repo(type_plural, ns, name), rev)["files"]
        wanted = [check_path(p.strip("/")) for p in form.get("paths", [])]
        listing = {e["path"]: e for e in tree_entries(files, "", recursive=True)}
        return json_response([listing[p] for p in wanted if p in listing])

    def _preupload(self, req: Request, type_plural: str, ns: str, name: str, rev: str) -> Response:
        body = req.json()
        with self.store.lock:
            state = self._load_repo(type_plural, ns, name)
            check_revision(rev)
            head = self._head(state, rev)
            files = find_commit(state, head)["files"]
        answer = []
        for item in body.get("files", []):
            path = check_path(str(item.get("path", "")))
            # "regular" for everything: content travels base64-encoded inside the commit
            # payload, so the client never asks for Xet tokens or the LFS batch API.
            answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": False,
                           "oid": files.get(path, {}).get("oid")})  # fmt: skip
        return json_response({"files": answer, "commitOid": head})

    def _create_branch(self, req: Request, type_plural: str, ns: str, name: str, branch: str) -> Response:
        """create_branch: 409 if it exists (the client's exist_ok accepts that), else point it at the start."""
        body = req.json() if req.body else {}
        with self.store.lock:
            state = self._load_repo(type_plural, ns, name)
            if check_revision(branch) in state["branches"]:
                raise HubError(409, f"Branch {branch} already exists")
            start = resolve_revision(state, (body or {}).get("startingPoint") or "main")
            state["branches"][branch] = start["id"]
            self.store.save(state)
        return json_response({})

    @staticmethod
    def _head(state: dict, rev: str) -> str:
        """The commit a commit to ``rev`` starts from: a branch's or pull request's head (a new branch: main's)."""
        pr = re.fullmatch(r"refs/pr/(\d+)", rev)
        if pr:
            if pr.group(1) not in state.get("prs", {}):
                raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
            return state["prs"][pr.group(1)]
        return state["branches"].get(rev) or state["branches"]["main"]

    def _commit(self, req: Request, type_plural: str, ns: str, name: str, rev: str) -> Response:
        create_pr = req.query.get("create_pr", ["0"])[0] in ("1", "true", "True")
        if _SHA_RE.fullmatch(check_revision(rev)):
            raise HubError(400, f"Cannot commit to a commit sha, use a branch name: {rev}")
        try:
            lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        except ValueError as err:
            raise HubError(400, f"Invalid NDJSON commit payload: {err}") from err
        header = next((ln["value"] for ln in lines if ln.get("key") == "header"), None)
        if not header or not header.get("summary"):
            raise HubError(400, "Commit payload needs a header line with a summary")
        with self.store.lock:
            state = self._load_repo(type_plural, ns, name)
            parent = find_commit(state, self._head(state, rev))
            if header.get("parentCommit") and header["parentCommit"] != parent["id"]:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent["files"])
            for line in lines:
                key, value = line.get("key"), line.get("value") or {}
                if key == "header":
                    continue
                path = check_path(str(value.get("path", "")).strip("/"))
                if key == "file":
                    content = value.get("content", "")
                    data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    files[path] = self.store.put_blob(state, data)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                elif key == "deletedFolder":
                    inside = [p for p in files if p.startswith(path + "/")]
                    if not inside:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound")
                    for p in inside:
                        del files[p]
                else:  # "lfsFile" would need an LFS/Xet upload, which preupload never asks for
                    raise HubError(400, f"Unsupported commit operation {key!r} (HubServer only does regular files)")
            commit = self._new_commit(state, parent, files, header["summary"], header.get("description") or "")
            prs = state.setdefault("prs", {})
            pr_url = None
            if create_pr:  # a pull request: its own ref, the branch stays where it was
                number = str(len(prs) + 1)
                prs[number] = commit["id"]
                pr_url = f"{self._repo_url(state)}/discussions/{number}"
            elif rev.startswith("refs/pr/"):
                prs[rev.removeprefix("refs/pr/")] = commit["id"]
            else:
                state["branches"][rev] = commit["id"]
            self.store.save(state)
        return json_response({
            "success": True, "commitOid": commit["id"], "commitUrl": f"{self._repo_url(state)}/commit/{commit['id']}",
            "hookOutput": "", "pullRequestUrl": pr_url,
        })  # fmt: skip

    def _resolve(self, req: Request, type_plural: str | None, ns: str, name: str, rev: str, path: str) -> Response:
        path = check_path(path)
        with self.store.lock:
            state = self._load_repo(type_plural, ns, name)
            commit = resolve_revision(state, rev)
            info = commit["files"].get(path)
            if info is None:  # X-Repo-Commit lets the client cache the file's absence
                raise HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit["id"]})
            data = self.store.get_blob(state, info["oid"])
        headers = {"ETag": f'"{info["oid"]}"', "X-Repo-Commit": commit["id"], "Accept-Ranges": "bytes"}
        status, total = 200, len(data)
        range_header = req.headers.get("Range")
        if range_header:  # "bytes=START-" or "bytes=START-END" (used to resume downloads)
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            start = int(match.group(1)) if match else total
            end = min(int(match.group(2) or total - 1), total - 1) if match else -1
            if start > end:
                raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{total}"})
            data, status = data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        return Response(status, data, headers, content_type="application/octet-stream")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer

    def handle_error(self, request, client_address) -> None:
        # Clients that give up (timeouts in "stall" mode) close the socket: not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no keep-alive bookkeeping is needed.
    server_version = "HubServer/1.0"

    def _serve(self) -> None:
        hub = self.server.hub
        raw_path, _, query = self.path.partition("?")
        if hub.fail_mode == "stall-upload" and self.command == "POST" and "/commit/" in raw_path:
            hub.requests.append((self.command, raw_path))
            self.rfile.read(int(self.headers.get("Content-Length") or 0) // 2)  # half the upload arrives
            hub.stall()
            self.close_connection = True
            return
        req = Request(self.command, raw_path, parse_qs(query), self.headers, self._read_body())
        resp = hub.handle(req)
        self.send_response(resp.status)
        for key, value in resp.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if hub.fail_mode == "stall-download" and "/resolve/" in raw_path and resp.status in (200, 206):
            self.wfile.write(b"" if self.headers.get("Range") else resp.body[: len(resp.body) // 2])
            self.wfile.flush()
            hub.stall()
            self.close_connection = True
            return
        self.wfile.write(resp.body)

    def _read_body(self) -> bytes:
        # Always read the whole body, even when answering an error: closing a socket
        # with unread data makes the client see a reset instead of our response.
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass
