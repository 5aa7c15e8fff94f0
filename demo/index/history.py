"""Which revision of a hub repo holds an index set.

A repo's head need not hold its data: the Searchium Space deleted ``data/`` and ``new_data/`` at
``main``, and its vectors live on in older commits (under older names in older ones still).
:func:`locate` therefore tries the revision a preset pins, then the repo's history newest first
(``HfApi.list_repo_commits``, then a listing at each commit), and stops at the first revision
holding a complete set: float vectors, packed codes of the same N and a metadata CSV. A revision
whose listing fails is skipped with a log line. An explicit ``revision`` is taken as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from demo.errors import InputError
from demo.index.discover import IndexFiles, choose_index_files, inspect_repo
from demo.index.hub import HubError, HubRepo, commit_id, list_commits
from demo.presets import IndexSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Located:
    """An index set found in a hub repo: the commit it was found at and its files there."""

    repo: HubRepo
    revision: str  # the commit id (as given when the hub could not resolve it)
    files: IndexFiles
    index_set: IndexSet | None = None

    def describe(self) -> str:
        """e.g. ``WebVid 1.5M from spaces/Searchium-ai/Video-Search @ ee0c763``."""
        title = f"{self.index_set.title} from " if self.index_set else ""
        return f"{title}{self.repo} @ {self.revision[:7]}"


def set_at(repo: HubRepo, revision: str | None, index_set: IndexSet | None = None,
           only: Sequence[str] | None = None, dim: int | None = None) -> IndexFiles:
    """The set's files at ``revision``; :class:`HubError` (saying what is there) when it holds none
    or cannot be listed."""
    candidates = inspect_repo(repo, revision, only=only, prefix=index_set.prefix if index_set else None)
    return choose_index_files(candidates, dim=dim)


def revisions(repo: HubRepo, start: str | None = None) -> Iterator[str]:
    """``start`` (when given), then the commits of the main branch, newest first; the commits are
    listed only when ``start`` is not enough."""
    if start:
        yield start
    try:
        commits = list_commits(repo)
    except HubError as err:
        if not start:
            raise
        log.warning("%s; no revision but %s tried", err, start)
        return
    yield from (c for c in commits if not (start and c.startswith(start)))


def locate(repo: HubRepo, *, index_set: IndexSet | None = None, revision: str | None = None,
           start: str | None = None, only: Sequence[str] | None = None, dim: int | None = None,
           hint: str = "") -> Located:
    """Where in ``repo`` the set is: at ``revision`` exactly when given, else at ``start`` or the
    newest commit holding a complete set (codes included). ``only``: these paths make the set.

    Raises :class:`InputError` (one line, ending with ``hint``) when no revision holds one.
    """
    if revision is not None:
        return Located(repo, commit_id(repo, revision), set_at(repo, revision, index_set, only, dim), index_set)
    what = f"{index_set.title} set ({index_set.prefix}*)" if index_set else "set"
    tried = 0
    for rev in revisions(repo, start):
        tried += 1
        try:
            files = set_at(repo, rev, index_set, only, dim)
        except HubError as err:
            log.warning("skipping revision %s: %s", rev[:12], err)
            continue
        if files.codes is None:
            log.info("%s at %s has no packed codes beside %s; trying an older revision", repo, rev[:12],
                     files.embeddings.path)
            continue
        found = Located(repo, commit_id(repo, rev), files, index_set)
        log.info("%s: %s", found.describe(), ", ".join(files.paths()))
        return found
    order = f"the pinned {start[:7]}, then main's history" if start else "main's history"
    raise InputError(f"no revision of {repo} holds a complete {what}: float (N, D) vectors, packed codes of the "
                     f"same N and a CSV of URLs and captions (tried {tried} revision(s): {order}, newest first)"
                     f"{'. ' + hint if hint else ''}")
