"""A small stand-in for the Hugging Face hub on 127.0.0.1, in the hub's HTTP layout.

``huggingface_hub`` (and transformers through it) talks to whatever ``HF_ENDPOINT`` names, so
pointing it here runs the real client code offline: a repo is a history of commits (each the
whole tree; ``add_commit``), served at any revision (``main``, a commit id or its first 7+
characters): commit listing (``/api/{type}s/{id}/commits/{rev}``), tree listing
(``/api/{type}s/{id}/tree/{rev}[/{path}]``, recursive or not, and ``paths-info/{rev}``), repo
info (``/api/{type}s/{id}/revision/{rev}``), file metadata and downloads
(``/{prefix}{id}/resolve/{rev}/{path}`` with ETag, X-Repo-Commit and HTTP ranges). Anything else
under ``/files/`` is served as plain static files (the video URLs of a stand-in index), with
ranges, so a browser can play them.

Faults for tests: ``cut(path, at)`` makes the next full download of ``path`` stop after ``at``
bytes (the connection is closed mid-body), ``fail(path)`` answers its next ranged GET (a resume)
with 503, ``break_tree(type, id, rev)`` makes listing the tree at ``rev`` answer 400 (as listing
the real Searchium Space's ``main`` may fail; 400 because the client retries 5xx for seconds).
Every request is recorded in ``requests`` (method, path, Range header).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}


@dataclass
class Commit:
    """One commit of a stand-in repo: the whole tree as it is at that commit."""

    sha: str
    title: str
    files: dict[str, bytes]
    date: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.sha, "title": self.title, "message": "", "authors": [{"user": "standin"}],
                "date": self.date}


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    commits: list[Commit] = field(default_factory=list)  # oldest first; the last is main's head
    broken: set[str] = field(default_factory=set)  # revisions whose tree listing fails (see HubStandIn.break_tree)

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    @property
    def files(self) -> dict[str, bytes]:
        return self.head.files

    @property
    def sha(self) -> str:
        return self.head.sha

    def commit(self, files: dict[str, bytes], title: str = "update", sha: str | None = None) -> Commit:
        if sha is None:
            digest = hashlib.sha1((self.repo_id + (self.sha if self.commits else "")).encode())
            for path in sorted(files):
                digest.update(path.encode() + hashlib.sha1(files[path]).digest())
            sha = digest.hexdigest()
        made = Commit(sha, title, files, f"2024-01-{len(self.commits) + 1:02d}T00:00:00.000Z")
        self.commits.append(made)
        return made

    def at(self, revision: str) -> Commit | None:
        """The commit ``revision`` names: ``main``, a commit id or its first 7+ characters."""
        if revision == "main":
            return self.head
        found = [c for c in self.commits if len(revision) >= 7 and c.sha.startswith(revision)]
        return found[0] if len(found) == 1 else None

    def history(self, revision: str) -> list[Commit] | None:
        """``revision`` and its ancestors, newest first."""
        commit = self.at(revision)
        return None if commit is None else self.commits[: self.commits.index(commit) + 1][::-1]

    def info(self, commit: Commit) -> dict[str, Any]:
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": commit.sha, "private": False,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)], "tags": [], "downloads": 0}

    @staticmethod
    def entries(files: dict[str, bytes], folder: str, recursive: bool) -> list[dict[str, Any]] | None:
        folder = folder.strip("/")
        inside = [p for p in sorted(files) if not folder or p.startswith(folder + "/")]
        if folder and not inside:
            return None
        out, dirs = [], set()
        for p in inside:
            rest = p[len(folder) + 1:] if folder else p
            parts = rest.split("/")
            for i in range(1, len(parts)):
                d = "/".join(filter(None, [folder, *parts[:i]]))
                if d not in dirs and (recursive or i == 1):
                    dirs.add(d)
                    out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0,
                                "path": d})
            if recursive or len(parts) == 1:
                data = files[p]
                out.append({"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": p,
                            "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                    "pointerSize": 134}})
        return out


@dataclass
class HubStandIn:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    static: dict[str, bytes] = field(default_factory=dict)  # /files/<name> -> bytes
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    cuts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def add_repo(self, repo_type: str, repo_id: str, files: dict[str, bytes | Path]) -> None:
        """A repo of one commit holding ``files``."""
        self.repos.pop((repo_type, repo_id), None)
        self.add_commit(repo_type, repo_id, files, "initial commit")

    def add_commit(self, repo_type: str, repo_id: str, files: dict[str, bytes | Path], title: str = "update",
                   sha: str | None = None) -> str:
        """A new head for the repo (made if need be): the whole tree ``files`` (a file left out is
        deleted); ``sha`` names the commit (default: a hash of its parent and contents)."""
        data = {p: (f.read_bytes() if isinstance(f, Path) else f) for p, f in files.items()}
        repo = self.repos.setdefault((repo_type, repo_id), Repo(repo_type, repo_id))
        return repo.commit(data, title, sha).sha

    def break_tree(self, repo_type: str, repo_id: str, *revisions: str) -> None:
        """Listing the repo's tree at these revisions (``main`` or commit ids) answers an error, as
        listing the real Searchium Space's ``main`` may."""
        self.repos[(repo_type, repo_id)].broken.update(revisions)

    def add_folder(self, repo_type: str, repo_id: str, folder: Path, extra: dict[str, bytes | Path] | None = None
                   ) -> None:
        files: dict[str, bytes | Path] = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
                                          if p.is_file()}
        self.add_repo(repo_type, repo_id, {**files, **(extra or {})})

    def cut(self, path: str, at: int) -> None:
        """The next full (non-range) download of ``path`` sends ``at`` bytes and drops the connection."""
        self.cuts[path] = at

    def fail(self, path: str, times: int = 1) -> None:
        """The next ``times`` ranged GETs of ``path`` (resumes) are answered 503."""
        self.failures[path] = times

    def start(self) -> str:
        standin = self

        class Handler(_Handler):
            hub = standin

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="hub-standin").start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

    # ------------------------------------------------------------------ routing

    def do_HEAD(self) -> None:  # noqa: N802
        self.route(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self.route(body=True)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        self.route(body=True, form=raw)

    def route(self, body: bool, form: str = "") -> None:
        split = urlsplit(self.path)
        path, query = unquote(split.path), parse_qs(split.query)
        self.hub.requests.append((self.command, path, self.headers.get("Range")))
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["files"]:
            data = self.hub.static.get("/".join(parts[1:]))
            return self.send_bytes(data, body, "video/mp4") if data is not None else self.error(404, "EntryNotFound")
        if parts[:1] == ["api"]:
            return self.api(parts[1:], query, form)
        return self.resolve(parts, body)

    def repo(self, repo_type: str, org: str, name: str) -> Repo | None:
        found = self.hub.repos.get((repo_type, f"{org}/{name}"))
        if found is None:
            self.error(404, "RepoNotFound")
        return found

    def api(self, parts: list[str], query: dict[str, list[str]], form: str) -> None:
        if len(parts) < 3 or parts[0] not in PLURAL:
            return self.error(404, "RepoNotFound")
        repo = self.repo(PLURAL[parts[0]], parts[1], parts[2])
        if repo is None:
            return None
        rest = parts[3:]
        revision = rest[1] if len(rest) > 1 else "main"
        commit = repo.at(revision)
        if commit is None:
            return self.error(404, "RevisionNotFound")
        if not rest or rest[0] == "revision":
            return self.send_json(repo.info(commit))
        if rest[0] == "commits":
            return self.send_json([c.as_json() for c in repo.history(revision) or []])
        if rest[0] == "tree":
            if revision in repo.broken or commit.sha in repo.broken:
                return self.error(400, "BadRequest")
            entries = repo.entries(commit.files, "/".join(rest[2:]),
                                   query.get("recursive", ["false"])[0].lower() == "true")
            return self.send_json(entries) if entries is not None else self.error(404, "EntryNotFound")
        if rest[0] == "paths-info":
            wanted = parse_qs(form).get("paths", []) or json.loads(form or "{}").get("paths", [])
            everything = repo.entries(commit.files, "", True) or []
            return self.send_json([e for e in everything if e["path"] in wanted])
        return self.error(404, "EntryNotFound")

    def resolve(self, parts: list[str], body: bool) -> None:
        repo_type = "model"
        if parts[:1] in (["datasets"], ["spaces"]):
            repo_type, parts = PLURAL[parts[0]], parts[1:]
        if len(parts) < 5 or parts[2] != "resolve":
            return self.error(404, "EntryNotFound")
        repo = self.repo(repo_type, parts[0], parts[1])
        if repo is None:
            return None
        commit = repo.at(parts[3])
        if commit is None:
            return self.error(404, "RevisionNotFound")
        name = "/".join(parts[4:])
        data = commit.files.get(name)
        if data is None:
            return self.error(404, "EntryNotFound")
        if self.hub.failures.get(name, 0) > 0 and self.command == "GET" and self.headers.get("Range"):
            self.hub.failures[name] -= 1
            return self.error(503, "ServiceUnavailable")
        extra = {"X-Repo-Commit": commit.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
        return self.send_bytes(data, body, "application/octet-stream", extra, cut_key=name)

    # ----------------------------------------------------------------- replies

    def send_bytes(self, data: bytes, body: bool, kind: str, extra: dict[str, str] | None = None,
                   cut_key: str | None = None) -> None:
        start, end, status = 0, len(data) - 1, 200
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[6:].split(",")[0].partition("-")
            start = int(first) if first else max(0, len(data) - int(last))
            end = min(int(last), len(data) - 1) if first and last else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", kind)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not body:
            return
        cut = self.hub.cuts.pop(cut_key, None) if cut_key and status == 200 else None
        if cut is not None:
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data[start:end + 1])

    def send_json(self, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, status: int, code: str) -> None:
        data = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
