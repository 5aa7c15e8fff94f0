"""Named set-ups of models and index: ``embedded`` (offline default) and ``webvid``.

A preset only names where things are; everything loads through the same
``from_pretrained`` / ``VideoIndex.load`` path, so a hub id and a local folder
are interchangeable (``--model``, ``--index`` and ``--xclip`` override a preset).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from demo.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
PRECOMPUTED = ROOT / "precomputed"
ASSETS = ROOT / "assets"
PRESET_ENV = "DEMO_PRESET"
# Where indexes fetched from the hub are written (``index-<preset>`` inside it); default <project>/cache.
INDEX_HOME_ENV = "DEMO_INDEX_HOME"
# Which of the preset's hub sets to use (``index fetch --set``): e.g. ``half`` for webvid's ~5.4M videos.
INDEX_SET_ENV = "DEMO_INDEX_SET"


def shown_path(path: str | Path) -> str:
    """``path`` relative to the project when it lies inside it (else to the working directory,
    else as given): what manifests, model cards and results record, so they name no one's home
    folder. Hub ids pass through unchanged.

    >>> shown_path(ROOT / "precomputed" / "clip4clip-world")
    'precomputed/clip4clip-world'
    >>> shown_path("Searchium-ai/clip4clip-webvid150k")
    'Searchium-ai/clip4clip-webvid150k'
    """
    resolved = Path(path).resolve()
    for base in (ROOT, Path.cwd()):
        if resolved.is_relative_to(base.resolve()) and Path(path).exists():
            return resolved.relative_to(base.resolve()).as_posix()
    return str(path)


@dataclass(frozen=True)
class IndexSet:
    """One set of precomputed files in a preset's hub repo: vectors, packed codes and a metadata CSV
    whose repo paths all start with ``prefix``."""

    name: str  # what ``--set`` / $DEMO_INDEX_SET call it
    prefix: str  # e.g. "data/dataset_v1": dataset_v1.csv, dataset_v1_visual_features[_database].npy, ...
    title: str  # what the app's header calls it, e.g. "WebVid 1.5M"


@dataclass(frozen=True)
class Preset:
    name: str
    model: str  # CLIP4Clip checkpoint: hub id or folder
    index: str | None  # index folder (None: must be given)
    xclip: str  # X-CLIP checkpoint: hub id or folder
    labels: str  # label preset for the classification tab
    pooling: str | None = None  # None: the checkpoint's own
    description: str = ""
    # Where a missing index comes from: a hub repo of precomputed vectors + metadata
    # (``python -m demo index fetch``); None: it must be built or imported.
    index_repo: str | None = None
    frame_sampling: str | None = None  # None: the checkpoint's own (demo.models.temporal.SAMPLINGS)
    # The sets ``index_repo`` holds, the first the default; empty: whatever complete set the repo has.
    index_sets: tuple[IndexSet, ...] = ()
    index_set: str | None = None  # the chosen one (None: the first); see :meth:`with_set`
    # The revision of ``index_repo`` tried first (a commit id); None, or when it lacks the set: the
    # repo's history is walked newest first. ``index fetch --revision`` overrides it.
    index_revision: str | None = None

    @property
    def chosen_set(self) -> IndexSet | None:
        """The hub set this preset fetches (None when it names none)."""
        return next((s for s in self.index_sets if s.name == self.index_set), None) or \
            (self.index_sets[0] if self.index_sets else None)

    def with_set(self, name: str | None) -> Preset:
        """This preset fetching set ``name`` into its own folder (``index-webvid-half`` beside
        ``index-webvid``, so two sets never overwrite each other); None: unchanged."""
        if name is None:
            return self
        names = [s.name for s in self.index_sets]
        if name not in names:
            raise InputError(f"preset {self.name!r} has no index set {name!r}; "
                             + (f"choose one of {names}" if names else "it names no hub sets"))
        index = self.index if name == names[0] or not self.index else f"{self.index}-{name}"
        return replace(self, index=index, index_set=name)


EMBEDDED = Preset(
    name="embedded",
    model=str(PRECOMPUTED / "clip4clip-world"),
    index=str(PRECOMPUTED / "index-world"),
    xclip=str(PRECOMPUTED / "xclip-world"),
    labels="embedded-events",
    description="small CLIP4Clip and X-CLIP trained by this project on its rendered world (offline)",
)
WEBVID = Preset(
    name="webvid",
    model="Searchium-ai/clip4clip-webvid150k",
    # fetched on first use (about 1.5 GB); $DEMO_INDEX_HOME moves it
    index=str(Path(os.environ.get(INDEX_HOME_ENV) or ROOT / "cache") / "index-webvid"),
    xclip="microsoft/xclip-base-patch32",
    labels="kinetics400",
    pooling="meanP",
    description="CLIP4Clip trained on 150k WebVid clips (1.5M WebVid videos indexed by the Searchium "
    "Space), X-CLIP on Kinetics-400 (needs the hub or a local copy)",
    index_repo="spaces/Searchium-ai/Video-Search",
    # The Searchium notebook embeds a clip from every 1-fps frame, no cap; so were the Space's vectors.
    frame_sampling="every-second",
    index_sets=(IndexSet("v1", "data/dataset_v1", "WebVid 1.5M"),
                IndexSet("half", "new_data/video_half_dataset", "WebVid 5.4M (half)")),
    # The Space deleted data/ and new_data/ at main; this commit holds both sets under their current
    # names (older commits name the v1 files ..._visual_features_database[_packed].npy).
    index_revision="ee0c763dca5f564079d6c0865bb66c24f5ff0852",
)
PRESETS = {p.name: p for p in (EMBEDDED, WEBVID)}


def resolve_preset(name: str | None = None, model: str | None = None, index: str | None = None,
                   xclip: str | None = None, pooling: str | None = None, index_set: str | None = None) -> Preset:
    """The preset called ``name`` (default: ``$DEMO_PRESET`` or ``embedded``) with overrides;
    ``index_set`` (default: ``$DEMO_INDEX_SET`` for a preset with hub sets) picks one of its hub sets."""
    name = name or os.environ.get(PRESET_ENV) or "embedded"
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    if index_set is None and preset.index_sets:
        index_set = os.environ.get(INDEX_SET_ENV) or None
    preset = preset.with_set(index_set)
    overrides: dict[str, Any] = {k: v for k, v in dict(model=model, index=index, xclip=xclip, pooling=pooling).items()
                                 if v}
    if overrides:
        preset = replace(preset, name=preset.name if not (model or index) else "custom", **overrides)
    return preset
