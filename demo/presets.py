"""Named set-ups of models and index: ``embedded`` (offline default) and ``webvid``.

A preset names where things are and how clips are embedded: the CLIP4Clip model, its pooling, its
frame sampling and resizing, the index, the X-CLIP. It is resolved once, at the entry point (the CLI's
command, ``app.py``), into one :class:`Preset` (``--model``, ``--index``, ``--xclip``, ``--pooling``
override the named one) that travels down to the searcher, both index engines and evaluation; no
layer below re-derives it from strings. Everything loads through the same ``from_pretrained`` /
``VideoIndex.load`` path, so a hub id and a local folder are interchangeable.

When an index exists, :meth:`Preset.following_index` fills in what its manifest records (the model it
was built with, its pooling, sampling and resizing) wherever the user chose nothing else: a search
with ``--index DIR`` uses the index's own model.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo.errors import InputError

if TYPE_CHECKING:
    from demo.models.encoders import Clip4ClipEncoder

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PRECOMPUTED = ROOT / "precomputed"
ASSETS = ROOT / "assets"
PRESET_ENV = "DEMO_PRESET"
# demo.models.temporal.POOLINGS, spelled out so that parsing arguments does not import torch (a test
# keeps the two equal).
POOLING_CHOICES = ("meanP", "seqLSTM", "seqTransf", "tdb", "tdb+tab")
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
    frame_resize: str | None = None  # None: the checkpoint's own (demo.models.temporal.RESIZES)
    # True unless --model was given: the index's manifest then names the model (following_index)
    model_from_index: bool = True

    # The sets ``index_repo`` holds, the first the default; empty: whatever complete set the repo has.
    index_sets: tuple[IndexSet, ...] = ()
    index_set: str | None = None  # the chosen one (None: the first); see :meth:`with_set`
    # The revision of ``index_repo`` tried first (a commit id); None, or when it lacks the set: the
    # repo's history is walked newest first. ``index fetch --revision`` overrides it.
    index_revision: str | None = None

    def encoder_changes(self) -> dict[str, str]:
        """The settings this preset puts on top of the checkpoint's own (frame sampling, resizing)."""
        return {k: v for k, v in (("frame_sampling", self.frame_sampling), ("frame_resize", self.frame_resize)) if v}

    def open_encoder(self, device: str | None = None) -> Clip4ClipEncoder:
        """The CLIP4Clip encoder this preset names, with its pooling, sampling and resizing."""
        from demo.models.encoders import Clip4ClipEncoder  # torch: seconds to import

        return Clip4ClipEncoder.from_pretrained(self.model, pooling=self.pooling, device=device,
                                               **self.encoder_changes())

    def following_index(self, manifest: dict[str, Any]) -> Preset:
        """This preset with what the index's ``manifest`` records filled in where nothing else was chosen:
        the model it was built with (unless --model was given), its pooling, frame sampling and resizing."""
        model = self.model
        if self.model_from_index and manifest.get("model_path"):
            model = locate_model(str(manifest["model_path"]), self.model)
        return replace(self, model=model, pooling=self.pooling or manifest.get("pooling"),
                       frame_sampling=self.frame_sampling or manifest.get("sampling"),
                       frame_resize=self.frame_resize or manifest.get("resize"))
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
    return replace(preset, model_from_index=not model)


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def locate_model(recorded: str, fallback: str) -> str:
    """Where the model an index records (``model_path``: a folder, relative to the project as
    :func:`shown_path` writes it, or a hub id) is on this machine.

    A recorded folder that is not here (the index was built on another machine) gives ``fallback``
    when that is a folder of the same name, else the recorded name (a hub id loads from the hub).

    >>> locate_model("precomputed/clip4clip-world", "x")
    'precomputed/clip4clip-world'
    >>> locate_model("Searchium-ai/clip4clip-webvid150k", str(PRECOMPUTED / "clip4clip-world"))
    'Searchium-ai/clip4clip-webvid150k'
    """
    if Path(recorded).expanduser().exists():
        return recorded
    if (ROOT / recorded).exists():
        return shown_path(ROOT / recorded)
    if Path(fallback).expanduser().is_dir() and Path(recorded).name == Path(fallback).name:
        log.info("the index's model %s is not here; using %s (same name)", recorded, fallback)
        return fallback
    if not HUB_ID.fullmatch(recorded):
        log.warning("the index's model %s is not on this machine", recorded)
    return recorded
