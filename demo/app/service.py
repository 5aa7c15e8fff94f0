"""What the app does, without the UI: one object the Gradio callbacks call.

:class:`DemoService` loads the CLIP4Clip searcher (model + index) and the X-CLIP
classifier once, at start. Each public method takes exactly the inputs of one UI
event and returns plain data (dataclasses, dicts, lists) that :mod:`demo.app.ui` turns
into components. Every error a person can cause is a :class:`demo.errors.DemoError`;
the UI shows its message in the page.

Corpus clips are resolved to something a browser can play (:mod:`demo.search.media`): a URL, or the
app's ``/media/<id>`` route for a local file (a world clip is rendered on demand).
"""

from __future__ import annotations

import filecmp
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from demo.app.benchmark import BenchmarkView, Rerunner, read_view
from demo.app.confidence import QueryCheck
from demo.app.explore import Explorer
from demo.app.messages import corpus_id, friendly
from demo.app.results import MAX_K, MODES, DescribeResult, SearchResult, VideoHit, VideoMoments, clamp_k
from demo.errors import DemoError, IndexFormatError, InputError, ModelLoadError, VideoDecodeError
from demo.evaluate.moment_retrieval import RESULT_FILE, read_moments
from demo.evaluate.results import device_name
from demo.evaluate.suites import ZERO_SHOT_WORLD
from demo.evaluate.workflow import EvaluateRequest
from demo.index.fetch import fetch_preset, fetched_from
from demo.models.device import default_device
from demo.models.labels import LABEL_PRESETS, load_preset, parse_labels
from demo.models.xclip import XClipClassifier
from demo.presets import ASSETS, EMBEDDED, Preset, resolve_preset
from demo.search.media import MediaResolver, default_cache, is_url, prerender
from demo.search.searcher import open_searcher
from demo.search.text import MAX_QUERY_CHARS, clean_query
from demo.video.decode import probe
from demo.world import vocabulary

if TYPE_CHECKING:
    from demo.models.xclip import Classification, XClipClassifier
    from demo.search.searcher import Searcher
    from demo.search.timeline import TimelineEntry

log = logging.getLogger(__name__)

EXAMPLES_DIR = ASSETS / "examples"
# Test-split clips of the embedded world shipped as examples: one per kind of event.
EXAMPLE_IDS = ("test-000025", "test-000018", "test-000016", "test-000002", "test-000039", "test-000017")
MEDIA_ROUTE = "/media"  # local corpus clips are served at MEDIA_ROUTE/<quoted id>, by id only
# Re-exported: the page imports them from here.
__all__ = ["MAX_K", "MODES", "AppConfig", "DemoService", "DescribeResult", "SearchResult", "VideoHit", "VideoMoments"]
ProgressFn = Callable[[float, str], None]  # (fraction done, message)


@dataclass(frozen=True)
class AppConfig:
    """What to load and the limits on what people may upload; built once by ``app.py``."""

    preset: str | None = None  # "embedded" (default, or $DEMO_PRESET) or "webvid"
    model: str | None = None  # CLIP4Clip folder or hub id (default: the index's model)
    index: str | None = None  # index folder (default: the preset's)
    xclip: str | None = None  # X-CLIP folder or hub id (default: the preset's)
    pooling: str | None = None  # override the checkpoint's temporal pooling
    device: str | None = None  # default: cuda when present
    cache_dir: str | None = None  # where world clips are rendered (default: $DEMO_CACHE or cache/world)
    max_upload_mb: float = 100.0
    max_duration_s: float = 600.0  # long uploads get a timeline of captions (Video -> Text)
    # Visitors' sessions whose page state the server keeps (the oldest is dropped first): each holds
    # a copy of the page's component settings, about 0.2 MB, so the default keeps them near 40 MB.
    max_sessions: int = 200
    eval_limit: int | None = None  # test clips a CPU rerun of the benchmark uses (None: all)
    # Who may rerun the benchmark (52 s of CPU on the embedded suite): None lets it run when the
    # app listens on this machine only (app.py sets it from --host / --share / --allow-rerun).
    allow_rerun: bool | None = None
    public: bool = False  # served beyond this machine (--host other than loopback, or --share)

    def cache_path(self) -> Path:
        return default_cache(self.cache_dir)


class DemoService:
    """The loaded models and index, and one method per UI action; those on long videos, image
    queries and "more like this" are its :class:`~demo.app.explore.Explorer`'s (``self.explorer``)."""

    def __init__(self, searcher: Searcher, classifier: XClipClassifier | None, preset: Preset,
                 config: AppConfig = AppConfig(), xclip_error: str | None = None) -> None:  # noqa: B008
        self.searcher, self.classifier, self.preset, self.config = searcher, classifier, preset, config
        self.xclip_error = xclip_error  # why the classifier is missing
        self.media = MediaResolver(searcher.index, config.cache_path())
        self.rerunner = Rerunner()
        self.explorer = Explorer(searcher, self.clip_src, self.check_upload)
        self._ids = searcher.index.ids  # `in` is a lookup: no set of every id
        world = self.vocabulary()
        self.check = QueryCheck.for_index(searcher.index, None if world is None else
                                          [w for ws in world.values() for w in ws])

    @classmethod
    def load(cls, config: AppConfig = AppConfig()) -> DemoService:  # noqa: B008
        """Load the searcher (model + index), then the classifier. A missing X-CLIP leaves the
        classification tab with a message instead of stopping the app; a missing model or
        index stops it (DemoError). Sequential on purpose: loading both in threads would
        import transformers' modules from two threads at once, which is not safe."""
        preset = resolve_preset(config.preset, config.model, config.index, config.xclip, config.pooling)
        if preset.index and preset.index_repo and not (Path(preset.index) / "manifest.json").is_file():
            fetch_preset_index(preset, config.device)
        if preset.index and not Path(preset.index).is_dir():  # say so before seconds of torch imports
            how = {"embedded": "build the shipped models and index with `python -m demo train --preset embedded`",
                   "webvid": "import WebVid embeddings with `python -m demo index import ...`"}
            raise IndexFormatError(f"index folder {preset.index} does not exist: "
                                   f"{how.get(preset.name, 'build one with `python -m demo index build`')}, "
                                   "or pass --index DIR")
        started = time.perf_counter()
        searcher = open_searcher(preset, config.device)
        classifier, error = None, None
        try:
            classifier = XClipClassifier.from_pretrained(preset.xclip, config.device or default_device())
        except (ModelLoadError, OSError) as err:
            error = str(err)
            log.warning("classification is off: %s", err)
        log.info("models and index loaded in %.1f s", time.perf_counter() - started)
        return cls(searcher, classifier, preset, config, error)

    def warm_up(self) -> None:
        """One throwaway search, so the first person does not wait for lazy set-up
        (the binary index, torch's first kernels, the world's clip specs)."""
        try:
            self.search_text("a red circle moving left", k=1)
        except DemoError as err:  # pragma: no cover - only a broken index gets here
            log.warning("warm-up search failed: %s", err)

    def prerender(self) -> None:
        """Render the index's world clips that the cache lacks, in a child process at the lowest
        priority, so results play at once without slowing searches; returns when it is done."""
        missing = self.media.world_ids_to_render()
        if not missing:
            return
        log.info("rendering %d world clips into %s in the background", len(missing), self.config.cache_path())
        context = multiprocessing.get_context("spawn")
        child = context.Process(target=prerender, args=(self.config.cache_path(), missing), daemon=True,
                                name="prerender")
        child.start()
        child.join()

    # ------------------------------------------------------------------ info

    def info(self) -> dict[str, Any]:
        """What is loaded: preset, model, index, X-CLIP, device, corpus size."""
        summary = self.searcher.summary()
        return {**summary, "preset": self.preset.name, "preset_description": self.preset.description,
                "index_name": Path(summary["index"]).name, "model_source_name": Path(summary["model"]).name,
                "xclip": Path(self.preset.xclip).name if self.classifier else None,
                "xclip_error": self.xclip_error, "label_preset": self.preset.labels,
                "world": self.knows_world(), "video_to_text": self.searcher.describe_source,
                "index_source": fetched_from(self.searcher.index.info)}

    def knows_world(self) -> bool:
        """Whether the loaded model is one of the embedded world's: the embedded preset, or an
        index of world clips (world paths or world ids such as ``test-000123``), or the embedded model
        itself with another index (long videos of the world, say)."""
        return (self.preset.name == "embedded" or self.media.is_world() or self.media.has_world_ids()
                or _same_folder(self.searcher.model_source, EMBEDDED.model))

    def vocabulary(self) -> dict[str, list[str]] | None:
        """The embedded world's words (None for an index of other videos)."""
        if not self.knows_world():
            return None

        return vocabulary()

    def corpus_choices(self, limit: int = 1000) -> list[tuple[str, str]]:
        """(label, id) of the first ``limit`` corpus videos, for a picker (a long video once, not per window)."""
        rows: Sequence[dict[str, Any]] = self.searcher.index.metadata
        if self.explorer.long_videos():
            rows = [r for r in rows if r.get("captions") or r.get("title")]  # a long video's first window
        return [(_short(f"{r.get('video_id', r['id'])} · {r.get('title') or (r.get('captions') or [''])[0]}", 90),
                 str(r.get("video_id", r["id"]))) for r in rows[:limit]]

    def examples(self) -> list[str]:
        """Example clips for the upload tabs (rendered into assets/examples when missing)."""
        return [str(p) for p in self.media.examples(EXAMPLES_DIR, EXAMPLE_IDS)]

    def media_dirs(self) -> list[str]:
        """Folders Gradio may serve files from: the example clips and the cache the world's clips are
        rendered into (ours alone). An index's own clips go through :meth:`media_file`, by id."""
        return [str(self.config.cache_path()), str(EXAMPLES_DIR)]

    def media_file(self, clip_id: str) -> Path | None:
        """The local file of corpus clip ``clip_id`` (a world clip is rendered first); None for an
        unknown id, a URL or a missing file. The app's ``/media/<id>`` route serves only this."""
        return self.media.local_file(clip_id)

    def clip_src(self, clip_id: str) -> str | None:
        """What a page plays for corpus clip ``clip_id``: its URL, or the app's media route for a
        local file (rendered when first asked for); None when the clip is unavailable."""
        path = self.media.stored_path(clip_id)
        if path is None:
            return None
        if is_url(path):
            return path
        # A world index's clips are rendered when the browser asks for them, not during the search.
        if self.media.is_world() or self.media.resolve(clip_id, path) is not None:
            return MEDIA_ROUTE.lstrip("/") + "/" + quote(clip_id, safe="")
        return None

    # ------------------------------------------------------------- text -> video

    def search_text(self, query: str | None, k: float = 8, mode: str = MODES[0], per_video: float = 1) -> SearchResult:
        """Text -> video; over long videos the hits are moments (at most ``per_video`` per video)."""
        text = clean_query(query)
        exact = mode == "exact"
        timed = self.searcher.search_text_timed(text, k=clamp_k(k), exact=exact, per_video=clamp_k(per_video))
        hits = [self.explorer.video_hit(h) for h in timed.hits]
        notes = self.check.notes(text, hits[0].score if hits else None)
        if len(" ".join((query or "").split())) > MAX_QUERY_CHARS:
            notes.insert(0, f"Your text was cut to its first {MAX_QUERY_CHARS:,} characters (the model reads only "
                            f"the first {self.searcher.encoder.max_words - 2} tokens of those).")
        return SearchResult(text, hits, timed.encode_ms, timed.search_ms, "exact" if exact else MODES[0],
                            self.explorer.corpus_size(), tuple(notes), moments=self.explorer.long_videos())

    # The explorer's actions, under the names the page and the API call (see demo.app.explore).
    def long_videos(self) -> bool:
        return self.explorer.long_videos()

    def search_image(self, image: str | None, k: float = 10, mode: str = MODES[0],
                     per_video: float = 1) -> SearchResult:
        return self.explorer.search_image(image, k, mode, per_video)

    def more_like_this(self, result_id: str | None, k: float = 10, mode: str = MODES[0],
                       per_video: float = 1) -> SearchResult:
        return self.explorer.more_like_this(result_id, k, mode, per_video)

    def more_from_video(self, query: str | None, video_id: str | None) -> VideoMoments:
        return self.explorer.more_from_video(query, video_id)

    def timeline(self, video: str | None, clip_id: str | None = None) -> list[TimelineEntry]:
        return self.explorer.timeline(video, clip_id)

    # ------------------------------------------------------------- video -> text

    def search_video(self, video: str | None, clip_id: str | None = None, k: float = 10) -> DescribeResult:
        """Captions for corpus clip ``clip_id`` (its stored embedding; a long video: the mean of its
        windows) or else the ``video`` file. Its timeline: :meth:`timeline`."""
        index = self.searcher.index
        clip_id = corpus_id(clip_id)
        if clip_id and self.explorer.is_long_video(clip_id):
            return self.explorer.describe_long_video(clip_id, clamp_k(k))
        if clip_id:
            t0 = time.perf_counter()
            vec = index.vector(clip_id)
            t1 = time.perf_counter()
            hits = self.searcher.describe_vector(vec, k=clamp_k(k))
            return DescribeResult(hits, clip_id, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3,
                                  source=self.searcher.describe_source)
        path = self.check_upload(video)
        timed = friendly(path, lambda: self.searcher.describe_video_timed(path, k=clamp_k(k)))
        return DescribeResult(self.explorer.by_video(timed.hits), self.corpus_copy(path), timed.encode_ms,
                              timed.search_ms,
                              source=self.searcher.describe_source)

    def corpus_copy(self, path: str) -> str | None:
        """The id of the corpus clip that the file ``path`` is a byte-for-byte copy of, else None.

        A file name proves nothing (anyone can call a clip ``test-000777.mp4``): the name only says
        which clip to compare with, and the bytes decide."""
        stem = Path(path).stem
        corpus = self.media.local_file(stem) if stem in self._ids else None
        try:
            return stem if corpus is not None and filecmp.cmp(corpus, path, shallow=False) else None
        except OSError:  # pragma: no cover - a file that vanished is no copy
            return None

    # ------------------------------------------------------------ classification

    def label_presets(self) -> list[str]:
        """The names of the label sets the classification tab offers."""
        return list(LABEL_PRESETS)

    def label_warning(self, labels: str | None) -> str | None:
        """A sentence when most labels use words the loaded model never saw (Kinetics-400's
        actions with the embedded world's X-CLIP, say); None when the labels suit it."""
        parsed = parse_labels(labels or "") if (labels or "").strip() else []
        strange = [label for label in parsed if self.check.unknown_words(label)]
        if len(parsed) and len(strange) > len(parsed) / 2:
            return (f"{len(strange)} of these {len(parsed)} labels use words the loaded model never saw in "
                    "training (e.g. " + ", ".join(f"“{x}”" for x in strange[:3]) + "): its scores for them "
                    "mean little. The embedded models know the rendered world's events (label set "
                    "“embedded-events”).")
        return None

    def label_preset(self, name: str | None) -> str:
        """The labels of preset ``name`` as one comma-separated string (for the textbox)."""
        return ", ".join(load_preset(name or self.preset.labels))

    def classify(self, video: str | None, labels: str | None, template: str | None = "{}") -> Classification:
        if self.classifier is None:
            raise InputError(f"zero-shot classification is unavailable: {self.xclip_error}")
        label_list = parse_labels(labels or "")
        path = self.check_upload(video)
        classifier = self.classifier
        return friendly(path, lambda: classifier.classify(path, label_list, template=template or "{}", k=5))

    # ----------------------------------------------------------------- benchmark

    def eval_files(self) -> tuple[Path, Path]:
        """(shipped, rerun): the evaluation stored next to the model (else next to the index),
        and where the app's own reruns go (the cache, so a read-only checkout still works)."""
        model = Path(self.searcher.model_source)
        shipped = (model if model.is_dir() else Path(self.searcher.index.root or ".")) / "eval.json"
        return shipped, self.config.cache_path() / "eval" / f"{model.name or 'model'}.json"

    def benchmark(self) -> BenchmarkView:
        """The newest stored evaluation of the active model (no rows if it was never evaluated)."""
        return read_view(list(self.eval_files()))

    def moment_benchmark(self) -> str:
        """The stored moment-retrieval evaluation of the active model, as Markdown (``python -m demo
        evaluate --suite moments --write-benchmarks`` writes it beside the model)."""
        model = Path(self.searcher.model_source)
        return read_moments(model / RESULT_FILE) if model.is_dir() else ""

    def can_rerun(self) -> bool:
        """Whether this app reruns the benchmark for whoever presses the button (see AppConfig)."""
        allowed = self.config.allow_rerun if self.config.allow_rerun is not None else not self.config.public
        return allowed and self.rerun_reason() is None

    def rerun_reason(self) -> str | None:
        """Why a rerun cannot run here at all (None: it can, if the operator allows it)."""
        if not self.knows_world() or not Path(self.searcher.model_source).is_dir():
            return ("the app reruns the embedded suite only; evaluate other models and test sets with "
                    "`python -m demo evaluate`")
        return None

    def rerun_benchmark(self, progress: ProgressFn | None = None) -> BenchmarkView:
        """Evaluate the active model on the embedded world's test split again, through the same
        workflow as ``python -m demo evaluate``, in a child process (:mod:`demo.app.benchmark`):
        the first ``eval_limit`` clips on a CPU, all of them on a GPU."""
        reason = self.rerun_reason()
        if reason is not None or not self.can_rerun():
            raise InputError(reason or "reruns are off on this server (the operator can start the app with "
                             "--allow-rerun, or run `python -m demo evaluate`)")
        device = self.searcher.encoder.device
        request = EvaluateRequest(
            world=self.config.cache_path(), zero_shot=self._zero_shot(), clip4clip=Path(self.searcher.model_source),
            index=self.searcher.index.root, limit=None if device.startswith("cuda") else self.config.eval_limit,
            device=device, workers=2, cache=self.config.cache_path().parent / "evaluate",
            command="app.py: Benchmark tab, Rerun")
        self.rerunner.run(request, self.eval_files()[1], progress)
        return self.benchmark()

    def _zero_shot(self) -> Path | None:
        """The zero-shot row's model: the shipped image-pretrained CLIP, for the embedded preset only."""
        return ZERO_SHOT_WORLD if self.preset.name == "embedded" and ZERO_SHOT_WORLD.is_dir() else None

    def device(self) -> str:
        """The device in words, e.g. ``cpu (x86_64, 2 threads, fp32)``."""
        return device_name(self.searcher.encoder.device)

    # -------------------------------------------------------------------- uploads

    def check_upload(self, video: str | None) -> str:
        """The upload's path if it is a video within the limits, else a DemoError saying why."""
        if not video:
            raise InputError("no video: upload a clip or pick an example")
        path = Path(video)
        if not path.is_file():
            raise VideoDecodeError(f"{path.name}: the upload did not arrive (no such file)")
        size_mb = path.stat().st_size / 2**20
        if size_mb > self.config.max_upload_mb:
            raise InputError(f"{path.name} is {size_mb:.0f} MB; the limit is {self.config.max_upload_mb:g} MB")
        info = friendly(str(path), lambda: probe(path))
        if info.duration > self.config.max_duration_s:
            raise InputError(f"{path.name} lasts {info.duration:.0f} s; the limit is "
                             f"{self.config.max_duration_s:g} s: trim it and upload again")
        return str(path)


def fetch_preset_index(preset: Preset, device: str | None = None) -> None:
    """Download and import the preset's precomputed index (``python -m demo index fetch``), once."""
    log.info("index %s is missing: fetching it from %s (once; later starts load it from disk)", preset.index,
             preset.index_repo)
    fetch_preset(preset, captions="auto", device=device)


def _same_folder(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:  # pragma: no cover - an unresolvable path is not the same folder
        return False


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
