"""Precomputed indexes from files: ``index fetch`` (a hub repo) and ``index import`` (local files).

``python -m demo index fetch webvid`` (and ``DEMO_PRESET=webvid python app.py`` when the index is
missing) lists the repo the preset names, finds the video vectors, packed codes and metadata CSV
by what they hold (:mod:`demo.index.discover`), downloads them once into the hub cache (progress
bar, resumable: :func:`demo.index.hub.download`) and streams them into an index folder
(:func:`demo.index.precomputed.import_precomputed`).

Video -> text over such an index: caption embeddings are computed for every caption when a GPU
is present (``captions="auto"``) or when asked (``"all"``, hours on a CPU for 1.5M captions);
otherwise none are, and a clip is described by the captions of the videos nearest it, embedded
when asked for (:meth:`demo.search.searcher.Searcher.describe_vector`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import InputError
from demo.index.discover import choose_index_files, inspect_repo
from demo.index.hub import HubRepo, download
from demo.index.precomputed import ImportReport, import_precomputed
from demo.index.stream import NpyRows
from demo.models.fingerprint import ModelFingerprint, model_name
from demo.presets import Preset

log = logging.getLogger(__name__)
CAPTION_MODES = ("auto", "all", "none")


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
                revision: str | None = None, captions: str = "auto", device: str | None = None,
                overwrite: bool = False, **changes: Any) -> ImportReport:
    """Find, download and import the precomputed index in hub ``repo`` into ``out``.

    ``files``: the repo paths to use (vectors, optional codes, metadata CSV) instead of finding them.
    ``changes``: settings of ``model`` the vectors were made with (the webvid preset's
    ``frame_sampling="every-second"``), recorded in the manifest.
    """
    hub = repo if isinstance(repo, HubRepo) else HubRepo.parse(repo)
    chosen = choose_index_files(inspect_repo(hub, revision, only=files), dim=model_dim(model))
    log.info("index files in %s: %s", hub, ", ".join(chosen.paths()))
    local = {c.path: download(hub, c.path, revision) for c in (chosen.embeddings, chosen.codes, chosen.metadata)
             if c is not None}
    fingerprint = model_fingerprint(model, chosen.embeddings.width, **changes)
    encode = caption_encoder(model, captions, device, **changes)
    return import_precomputed(local[chosen.embeddings.path], local[chosen.metadata.path], out, fingerprint,
                              local[chosen.codes.path] if chosen.codes else None, encode_texts=encode,
                              overwrite=overwrite, info={"model_path": model, "source": f"{hub}: " + ", ".join(
                                  chosen.paths())})


def fetch_preset(preset: Preset, out: str | Path | None = None, *, repo: str | None = None,
                 files: Sequence[str] | None = None, revision: str | None = None, captions: str = "auto",
                 device: str | None = None, overwrite: bool = False) -> ImportReport:
    """:func:`fetch_index` for a preset: its repo, model, pooling and frame sampling, into its index folder
    (``out`` and ``repo`` override them)."""
    repo = repo or preset.index_repo
    out = out or preset.index
    if not repo or not out:
        raise InputError(f"preset {preset.name!r} names no hub repo or index folder to fetch into; pass "
                         "--index-repo and --out")
    return fetch_index(repo, out, preset.model, files=files, revision=revision, captions=captions, device=device,
                       overwrite=overwrite, pooling=preset.pooling, frame_sampling=preset.frame_sampling)


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
