"""Precomputed indexes from files: ``index fetch`` (a hub repo) and ``index import`` (local files).

``python -m demo index fetch webvid`` (and ``DEMO_PRESET=webvid python app.py`` when the index is
missing) finds the revision of the preset's repo that holds its set (the pinned commit, else the
newest in the repo's history: :mod:`demo.index.history`), finds the video vectors, packed codes
and metadata CSV there by what they hold (:mod:`demo.index.discover`), downloads them once into
the hub cache (progress bar, resumable: :func:`demo.index.hub.download`) and streams them into an
index folder (:func:`demo.index.precomputed.import_precomputed`); the manifest records the repo,
the commit and the set.

Video -> text over such an index: caption embeddings are computed for every caption when a GPU
is present (``captions="auto"``) or when asked (``"all"``, hours on a CPU for 1.5M captions);
otherwise none are, and a clip is described by the captions of the videos nearest it, embedded
when asked for (:meth:`demo.search.searcher.Searcher.describe_vector`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import InputError
from demo.index.history import locate
from demo.index.hub import HubRepo, download
from demo.index.precomputed import ImportReport, import_precomputed
from demo.index.stream import NpyRows
from demo.models.fingerprint import ModelFingerprint, model_name
from demo.presets import IndexSet, Preset

log = logging.getLogger(__name__)
CAPTION_MODES = ("auto", "all", "none")
# How to get an index when the hub has none to fetch (the end of that error's line).
BUILD_HINT = ("Build one from your own videos instead: `python -m demo index build CSV --model {model} --out DIR` "
              "(a CSV of path,caption; WebVid's contentUrl,name renamed), or import vectors you hold: "
              "`python -m demo index import --embeddings X.npy --metadata X.csv --model {model} --out DIR`")


def model_fingerprint(model: str, dim: int, pooling: str | None = None, image_size: int = 224,
                      **changes: Any) -> ModelFingerprint:
    """The fingerprint an index of ``model``'s vectors records, read from the checkpoint's settings
    (its ``clip4clip.json``, else CLIP4Clip's reference settings) with ``changes`` applied;
    loads no weights."""
    from demo.models.clip4clip import checkpoint_settings

    settings = checkpoint_settings(model).with_changes(pooling=pooling, **changes)
    return ModelFingerprint(model=model_name(model), pooling=settings.pooling, dim=dim, image_size=image_size,
                            frames=settings.frame_cap or 0, sample_fps=settings.sample_fps,
                            sampling=settings.frame_sampling, resize=settings.frame_resize)


def model_dim(model: str) -> int | None:
    """The embedding width of ``model`` from its ``config.json`` (folder or hub; None if unreadable)."""
    from demo.models.clip4clip import checkpoint_file

    path = checkpoint_file(model, "config.json")
    try:
        config = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return None
    dim = config.get("projection_dim") or (config.get("text_config") or {}).get("projection_dim")
    return int(dim) if dim else None


def caption_encoder(model: str, mode: str, device: str | None = None,
                    **changes: Any) -> Callable[[list[str]], np.ndarray] | None:
    """The text encoder that embeds every caption, or None (``mode`` "none", or "auto" without a GPU)."""
    if mode not in CAPTION_MODES:
        raise InputError(f"captions must be one of {CAPTION_MODES}, got {mode!r}")
    from demo.models.device import resolve_device
    from demo.models.encoders import Clip4ClipEncoder

    device = resolve_device(device)
    if mode == "none" or (mode == "auto" and not device.startswith("cuda")):
        return None
    if not device.startswith("cuda"):
        log.warning("embedding every caption on the CPU: about an hour per 100k captions on 2 cores")
    return Clip4ClipEncoder.from_pretrained(model, device=device, **changes).encode_texts


def fetch_index(repo: str | HubRepo, out: str | Path, model: str, *, files: Sequence[str] | None = None,
                revision: str | None = None, start: str | None = None, index_set: IndexSet | None = None,
                captions: str = "auto", device: str | None = None, overwrite: bool = False,
                **changes: Any) -> ImportReport:
    """Find, download and import the precomputed index in hub ``repo`` into ``out``.

    Where: at ``revision`` exactly when given, else at ``start`` (a pinned commit) or the newest
    commit of the repo's history holding a complete set (:func:`demo.index.history.locate`).
    ``index_set``: only files under its path prefix make the set. ``files``: the repo paths to use
    (vectors, optional codes, metadata CSV) instead of finding them. ``changes``: settings of
    ``model`` the vectors were made with (the webvid preset's ``frame_sampling="every-second"``),
    recorded in the manifest with the repo, the commit and the set the files came from.
    """
    hub = repo if isinstance(repo, HubRepo) else HubRepo.parse(repo)
    found = locate(hub, index_set=index_set, revision=revision, start=start, only=files, dim=model_dim(model),
                   hint=BUILD_HINT.format(model=model))
    chosen, sha = found.files, found.revision
    log.info("index files in %s: %s", found.describe(), ", ".join(chosen.paths()))
    local = {c.path: download(hub, c.path, sha) for c in (chosen.embeddings, chosen.codes, chosen.metadata)
             if c is not None}
    fingerprint = model_fingerprint(model, chosen.embeddings.width, **changes)
    encode = caption_encoder(model, captions, device, **changes)
    # The manifest's "source": where the files came from (an imported index names its file there).
    source = {"repo": str(hub), "revision": sha, "set": index_set.name if index_set else None,
              "title": index_set.title if index_set else None, "files": chosen.paths()}
    return import_precomputed(local[chosen.embeddings.path], local[chosen.metadata.path], out, fingerprint,
                              local[chosen.codes.path] if chosen.codes else None, encode_texts=encode,
                              overwrite=overwrite, info={"model_path": model, "source": source})


def fetched_from(info: Mapping[str, Any]) -> str | None:
    """What an index's manifest says it was fetched from, e.g. ``WebVid 1.5M from
    spaces/Searchium-ai/Video-Search @ ee0c763`` (None for an index not fetched from the hub).

    >>> fetched_from({"source": {"repo": "spaces/a/b", "revision": "ee0c763dca5f", "title": "WebVid 1.5M"}})
    'WebVid 1.5M from spaces/a/b @ ee0c763'
    """
    source = info.get("source")
    if not isinstance(source, Mapping) or not source.get("repo"):
        return None
    title, revision = source.get("title") or source.get("set"), str(source.get("revision") or "")
    return f"{title + ' from ' if title else ''}{source['repo']}{' @ ' + revision[:7] if revision else ''}"


def fetch_preset(preset: Preset, out: str | Path | None = None, *, repo: str | None = None,
                 files: Sequence[str] | None = None, revision: str | None = None, captions: str = "auto",
                 device: str | None = None, overwrite: bool = False) -> ImportReport:
    """:func:`fetch_index` for a preset: its repo, chosen set, pinned revision, model, pooling and
    frame sampling, into its index folder (``out``, ``repo`` and ``revision`` override them)."""
    repo = repo or preset.index_repo
    out = out or preset.index
    if not repo or not out:
        raise InputError(f"preset {preset.name!r} names no hub repo or index folder to fetch into; pass "
                         "--index-repo and --out")
    return fetch_index(repo, out, preset.model, files=files, revision=revision, start=preset.index_revision,
                       index_set=preset.chosen_set, captions=captions, device=device, overwrite=overwrite,
                       pooling=preset.pooling, frame_sampling=preset.frame_sampling)


def import_files(embeddings: str | Path, metadata: str | Path, out: str | Path, model: str, *,
                 binary: str | Path | None = None, pooling: str | None = None, image_size: int = 224,
                 caption_column: str | None = None, url_column: str | None = None, captions: str = "none",
                 device: str | None = None, overwrite: bool = False, **changes: Any) -> ImportReport:
    """``index import``: local vectors (+ codes) + CSV into an index of ``model``'s embeddings."""
    dim = NpyRows(embeddings).shape[-1]
    fingerprint = model_fingerprint(model, dim, pooling, image_size, **changes)
    encode = caption_encoder(model, captions, device, pooling=pooling, **changes)
    return import_precomputed(embeddings, metadata, out, fingerprint, binary, caption_column=caption_column,
                              url_column=url_column, encode_texts=encode, overwrite=overwrite,
                              info={"model_path": model})
