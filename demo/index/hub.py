"""The Hugging Face hub, through ``huggingface_hub``: list a repo, peek at a file's first bytes,
download a file into the hub cache, resumably.

Everything goes to ``huggingface_hub``'s endpoint (``HF_ENDPOINT``, default huggingface.co) and
cache (``HF_HOME`` / ``HF_HUB_CACHE``). :func:`download` keeps the hub's cache layout (the file
ends up where ``hf_hub_download`` puts it, and later calls find it there, offline too) but, unlike
``hf_hub_download`` in current ``huggingface_hub`` versions, an interrupted download is continued
on the next run: the bytes so far are kept in ``blobs/<etag>.partial`` and the rest is asked for
with an HTTP ``Range``. A multi-GB file over a flaky line no longer starts over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from demo.errors import DemoError

log = logging.getLogger(__name__)
REPO_TYPES = {"spaces": "space", "datasets": "dataset", "models": "model"}


class HubError(DemoError):
    """The hub could not be reached, or does not have what was asked for."""


@dataclass(frozen=True)
class HubRepo:
    """A hub repository: ``repo_id`` (``org/name``) of ``repo_type`` model, dataset or space."""

    repo_id: str
    repo_type: str = "model"

    @classmethod
    def parse(cls, text: str) -> HubRepo:
        """``org/name`` (a model), ``spaces/org/name``, ``datasets/org/name`` or a hub URL of one.

        >>> HubRepo.parse("spaces/Searchium-ai/Video-Search")
        HubRepo(repo_id='Searchium-ai/Video-Search', repo_type='space')
        >>> str(HubRepo.parse("https://huggingface.co/datasets/a/b"))
        'datasets/a/b'
        """
        parts = [p for p in text.split("://")[-1].split("/") if p]
        if "." in parts[0]:  # a URL's host
            parts = parts[1:]
        kind = REPO_TYPES.get(parts[0]) if len(parts) > 2 else None
        parts = parts[1:] if kind else parts
        if len(parts) != 2:
            raise HubError(f"{text!r} is not a hub repo (org/name, spaces/org/name or datasets/org/name)")
        return cls("/".join(parts), kind or "model")

    def __str__(self) -> str:
        prefix = {"space": "spaces/", "dataset": "datasets/"}.get(self.repo_type, "")
        return prefix + self.repo_id


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int


def hub_failures() -> tuple[type[Exception], ...]:
    """What ``huggingface_hub`` raises when the hub fails or refuses: its HTTP error, the HTTP
    library's own errors below it (a refused connection is no ``OSError`` in every version), and
    ``OSError`` / ``ValueError``."""
    from huggingface_hub.errors import HfHubHTTPError

    bases = [b for b in HfHubHTTPError.__mro__ if issubclass(b, Exception) and b is not Exception]
    return (*bases, OSError, ValueError)


def _hub_error(err: Exception, what: str) -> HubError:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return HubError(f"{what}: {text}")


def list_files(repo: HubRepo, revision: str | None = None) -> list[RemoteFile]:
    """Every file in the repo (recursively), with its size in bytes."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    try:
        entries = HfApi().list_repo_tree(repo.repo_id, recursive=True, revision=revision, repo_type=repo.repo_type)
        return [RemoteFile(e.path, int(e.size or 0)) for e in entries if isinstance(e, RepoFile)]
    except hub_failures() as err:
        raise _hub_error(err, f"cannot list {repo}" + (f" at {revision}" if revision else "")) from err


def list_commits(repo: HubRepo, revision: str | None = None) -> list[str]:
    """The commit ids of ``revision``'s history (default: the main branch), newest first."""
    from huggingface_hub import HfApi

    try:
        commits = HfApi().list_repo_commits(repo.repo_id, revision=revision, repo_type=repo.repo_type)
    except hub_failures() as err:
        raise _hub_error(err, f"cannot list the commits of {repo}" + (f" at {revision}" if revision else "")) \
            from err
    return [c.commit_id for c in commits]


def commit_id(repo: HubRepo, revision: str) -> str:
    """The commit ``revision`` (a branch, tag or short id) names; ``revision`` itself when it is
    a full commit id or the hub cannot say."""
    from huggingface_hub import HfApi

    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    try:
        sha = HfApi().repo_info(repo.repo_id, revision=revision, repo_type=repo.repo_type).sha
    except hub_failures() as err:
        log.info("cannot resolve %s of %s to a commit (%s); recording it as given", revision, repo, err)
        return revision
    return sha or revision


def read_head(repo: HubRepo, path: str, nbytes: int, revision: str | None = None) -> bytes:
    """The first ``nbytes`` of a file (one ranged GET; nothing is cached)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(repo.repo_id, path, repo_type=repo.repo_type, revision=revision)
    headers = {**build_hf_headers(), "Range": f"bytes=0-{nbytes - 1}"}
    try:
        response = get_session().get(url, headers=headers, follow_redirects=True)
        hf_raise_for_status(response)
    except hub_failures() as err:
        raise _hub_error(err, f"cannot read {path} in {repo}") from err
    return bytes(response.content[:nbytes])


def cached(repo: HubRepo, path: str, revision: str | None = None) -> Path | None:
    """The file's path in the hub cache, or None when it has not been downloaded."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo.repo_id, path, revision=revision, repo_type=repo.repo_type)
    return Path(found) if isinstance(found, str) else None


def download(repo: HubRepo, path: str, revision: str | None = None) -> Path:
    """The file in the hub cache, downloaded first if need be (with the hub's progress bar).

    An earlier interrupted download of the same file version continues where it stopped.
    Raises :class:`HubError` when the hub is unreachable and the file is not cached.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    found = cached(repo, path, revision)
    if found is not None:
        return found
    if constants.HF_HUB_OFFLINE:
        raise HubError(f"{path} of {repo} is not in the hub cache and HF_HUB_OFFLINE is set")
    kind = repo.repo_type
    try:
        meta = get_hf_file_metadata(hf_hub_url(repo.repo_id, path, repo_type=kind, revision=revision))
        if meta.etag is None or meta.size is None or meta.location is None:
            raise HubError(f"the hub sent no etag/size for {path} in {repo}")
        storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo.repo_id, repo_type=kind)
        blob = storage / "blobs" / meta.etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        partial = blob.with_name(blob.name + ".partial")
        with WeakFileLock(str(partial) + ".lock"):
            if not blob.exists():
                _fill(partial, meta.location, meta.size, path, build_hf_headers())
                partial.rename(blob)
        # The hub links the finished blob into its snapshot (and records the revision) itself.
        return Path(hf_hub_download(repo.repo_id, path, repo_type=kind, revision=revision))
    except HubError:
        raise
    except hub_failures() as err:
        raise _hub_error(err, f"cannot download {path} from {repo} (run the same command again to "
                              "continue where it stopped)") from err


def _fill(partial: Path, url: str, size: int, name: str, headers: dict[str, str]) -> None:
    """Append the missing bytes of ``url`` to ``partial`` until it holds ``size`` bytes (an HTTP
    ``Range`` from what is there; ``huggingface_hub``'s own ``http_get`` with its progress bar)."""
    from huggingface_hub.file_download import http_get

    have = partial.stat().st_size if partial.exists() else 0
    if have > size:  # not this file version's bytes
        partial.unlink()
        have = 0
    if have:
        log.info("continuing %s from %.1f of %.1f MB", name, have / 2**20, size / 2**20)
    with open(partial, "ab") as f:
        http_get(url, f, resume_size=have, headers=headers, expected_size=size, displayed_filename=name)
    if partial.stat().st_size != size:
        raise HubError(f"{name}: got {partial.stat().st_size} of {size} bytes; run again to continue")
