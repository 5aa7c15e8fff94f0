"""The Gradio page: a header and four tabs, each calling one :class:`~demo.app.service.DemoService` method.

Callbacks are a few lines: guard empty input, call the service, format the result
(:mod:`demo.app.format`). A :class:`~demo.errors.DemoError` becomes a message in the
page, never an error popup, and the app keeps serving. Named API endpoints:
``search_text``, ``search_video``, ``classify``, ``benchmark`` (and ``rerun_benchmark``).
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable
from typing import Any

import gradio as gr

from demo.app import format as fmt
from demo.app.header import header_html
from demo.app.service import MAX_K, MEDIA_ROUTE, MODES, DemoService
from demo.errors import DemoError
from demo.presets import ASSETS

CSS = ASSETS / "app.css"  # the app's blocks (Gradio scopes it to them)
FRAME_CSS = ASSETS / "frame.css"  # Gradio's frame around them: served unscoped, in the page's head
MOMENTS_JS = ASSETS / "moments.js"  # seeking players to moments; the result cards' buttons
CUSTOM_LABELS = "custom"
UPLOAD_LIFETIME = (600, 3600)
# Gradio's video player raises its own "Video not playable" toast when a browser cannot play an
# upload; the tab's status line already says why in one sentence, so that toast is dropped.
HEAD = """<script>
new MutationObserver(() => {
  for (const toast of document.querySelectorAll(".toast-body")) {
    if (toast.innerText.includes("Video not playable")) toast.remove();
  }
}).observe(document.documentElement, {childList: true, subtree: true});
</script>"""  # Gradio's delete_cache: (check every N s, delete files older than M s)
# Example chips: each has a matching clip in the shipped index that the shipped model ranks in its top 3.
WORLD_QUERIES = (
    "a green star drifting left",
    "a large white square sliding to the left",
    "a purple cross shrinking",
    "a blue circle bouncing",
    "a pink triangle and a purple circle approaching each other",
    "a large orange diamond fading out",
    "a small yellow hexagon heading left",
    "a red heart getting bigger",
)
OPEN_QUERIES = (
    "a dog running on the beach", "aerial view of a city at night", "a woman cooking in a kitchen",
    "fireworks over a river", "waves crashing on rocks", "a man riding a bicycle",
)


def theme() -> gr.themes.Base:
    """A calm theme with system fonts only: nothing is fetched from a font CDN."""
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
                          font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
                          font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])


def launch_options(service: DemoService) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: theme, css, the only folders Gradio serves files
    from (the example clips and the world-clip cache: ours alone) and how many sessions' state it
    keeps (every API call without a session is a new one: unbounded, 14,500 calls held 2 GB)."""
    head = (HEAD + f"<style>{FRAME_CSS.read_text(encoding='utf-8')}</style>"
            f"<script>{MOMENTS_JS.read_text(encoding='utf-8')}</script>")
    return {"theme": theme(), "css_paths": [CSS], "head": head, "allowed_paths": service.media_dirs(),
            "max_file_size": f"{service.config.max_upload_mb:g}mb", "footer_links": ["api"],
            "state_session_capacity": service.config.max_sessions}


def choose_plot_backend() -> None:
    """Settle matplotlib's backend on "agg" before the first request.

    Gradio wraps every event in a switch of matplotlib's backend, and reading a backend that is
    still "auto" imports ``matplotlib.pyplot``: about 0.4 s, paid inside the first person's
    first search. A server draws no windows, so "agg" (a user's ``MPLBACKEND`` wins)."""
    os.environ.setdefault("MPLBACKEND", "agg")
    try:
        import matplotlib  # noqa: F401  (reads MPLBACKEND once, here rather than in a request)
    except ImportError:  # pragma: no cover - Gradio then skips the switch too
        pass


def launch(demo: gr.Blocks, service: DemoService, **options: Any) -> None:
    """Start serving ``demo`` in the background (``Blocks.launch`` with :func:`launch_options`
    plus ``options``) and add the media route; the caller keeps the process alive."""
    choose_plot_backend()
    demo.launch(prevent_thread_lock=True, **launch_options(service), **options)
    add_media_route(demo.app, service)


def add_media_route(app: Any, service: DemoService) -> None:
    """Serve corpus clips at ``/media/<id>``: the file of that index row, by id, and nothing else.

    The id is looked up in the index; no path from the request ever reaches the file system, so
    neither a parent folder nor anything beside the clips can be fetched. Starlette's
    FileResponse answers range requests, so players can seek. Gradio builds its FastAPI app in
    ``launch``, with no hook for extra routes, so the route is added afterwards and moved to the
    front of the route list, ahead of Gradio's own.
    """
    from fastapi import HTTPException
    from fastapi.responses import FileResponse

    def media(clip_id: str) -> FileResponse:  # sync: runs in a worker thread while a clip renders
        path = service.media_file(clip_id)
        if path is None:
            raise HTTPException(status_code=404, detail="no such clip in the index")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "video/mp4",
                            headers={"Cache-Control": "private, max-age=3600"})

    app.add_api_route(MEDIA_ROUTE + "/{clip_id:path}", media, methods=["GET", "HEAD"], include_in_schema=False)
    app.router.routes.insert(0, app.router.routes.pop())


def build_demo(service: DemoService) -> gr.Blocks:
    """The whole page; models are already loaded in ``service``."""
    # Uploads are deleted an hour after they arrive (checked every 10 minutes): the server keeps
    # no one's clips for longer than a session needs them.
    with gr.Blocks(title="Video search · CLIP4Clip + X-CLIP", analytics_enabled=False,
                   delete_cache=UPLOAD_LIFETIME) as demo:
        gr.HTML(header_html(service.info(), service.vocabulary(), service.device()), elem_id="vs-header")
        with gr.Tabs(overflow_behavior="wrap"):  # every tab on screen, on a phone too (no "…" menu)
            with gr.Tab("Text → Video", id="t2v"):
                _text_to_video(service)
            with gr.Tab("Video → Text", id="v2t"):
                _video_to_text(service)
            with gr.Tab("Zero-shot classification", id="classify"):
                _classification(service)
            with gr.Tab("Benchmark", id="benchmark"):
                _benchmark(service, demo)
    return demo


def _warn(err: Exception) -> str:
    return f"⚠️ {err}"


def _text_to_video(service: DemoService) -> None:
    examples = WORLD_QUERIES if service.vocabulary() else OPEN_QUERIES
    with gr.Row(equal_height=True, elem_classes="vs-query-row"):
        query = gr.Textbox(label="query", placeholder="Describe the video you want, e.g. " + examples[0],
                           show_label=False, scale=5, min_width=200, autofocus=True, elem_id="vs-query")
        button = gr.Button("Search", variant="primary", scale=1, min_width=90, elem_id="vs-search")
    with gr.Row():
        k = gr.Slider(1, MAX_K, value=10, step=1, label="Results", info="how many to show", scale=2, min_width=160)
        mode = gr.Radio(list(MODES), value=MODES[0], label="Search mode", scale=2, min_width=160,
                        info="binary: Hamming search on sign codes, then a cosine rerank")
        per_video = gr.Slider(1, 10, value=1, step=1, label="Moments per video", info="in a long video", scale=2,
                              min_width=160, visible=service.long_videos())
    with gr.Accordion("Search with an image (a photo or a frame)", open=False), gr.Row(equal_height=True):
        image = gr.Image(type="filepath", sources=["upload", "clipboard"], label="image", height=160,
                         elem_id="vs-image", scale=3)
        image_button = gr.Button("Search with this image", scale=1, min_width=120, elem_id="vs-image-search")
    tries = gr.Examples([[q] for q in examples], inputs=[query], label="Try one of these", elem_id="vs-tries")
    status = gr.Markdown(label="status", elem_classes="vs-status", elem_id="vs-search-status")
    results = gr.HTML(fmt.message_html("Results appear here: type a query or click an example."),
                      label="results", elem_id="vs-results")
    more = gr.HTML("", label="more_from_video", elem_id="vs-more")
    with gr.Accordion("Results as JSON", open=False):
        as_json = gr.JSON(label="hits")
    outputs = [results, as_json, status]
    inputs = [query, k, mode, per_video]

    def search(query: str | None, k: float = 10, mode: str = MODES[0],
               per_video: float = 1) -> tuple[str, list[dict[str, Any]], str]:
        if not (query or "").strip():
            hint = f"Type what should happen in the video first, e.g. “{examples[0]}”."
            return fmt.message_html(hint), [], ""
        return _shown(lambda: service.search_text(query, k, mode, per_video))

    def by_image(image: str | None, k: float = 10, mode: str = MODES[0],
                 per_video: float = 1) -> tuple[str, list[dict[str, Any]], str]:
        if not image:
            return fmt.message_html("Upload a photo or a frame first."), [], ""
        return _shown(lambda: service.search_image(image, k, mode, per_video))

    button.click(search, inputs, outputs, api_name="search_text")
    query.submit(search, inputs, outputs, api_visibility="private")
    tries.load_input_event.then(search, inputs, outputs, api_visibility="private").then(
        None, js=_reveal("vs-search-status"))
    image_button.click(by_image, [image, k, mode, per_video], outputs, api_name="search_image")
    like = _result_actions(service, inputs, outputs, more)
    for event in (button.click, query.submit, image_button.click, like):
        event(lambda: "", None, [more], api_visibility="private", queue=False)  # a new search closes the panel


def _reveal(elem_id: str) -> str:
    """Browser code that scrolls element ``elem_id`` into view unless its top is already in the upper
    part of the screen: an example tapped on a phone runs below the fold, out of sight."""
    return (f"() => {{ const el = document.getElementById('{elem_id}'); if (!el) return; "
            "const top = el.getBoundingClientRect().top; "
            "if (top < 0 || top > window.innerHeight * 0.5) el.scrollIntoView({block: 'start'}); }")


def _shown(run: Callable[[], Any]) -> tuple[str, list[dict[str, Any]], str]:
    """A search's result as the three outputs (results HTML, JSON, status), or its error as a message."""
    try:
        result = run()
    except DemoError as err:
        return fmt.message_html(str(err), "warn"), [], _warn(err)
    return fmt.results_html(result), fmt.results_json(result), fmt.search_status(result)


def _result_actions(service: DemoService, inputs: list[Any], outputs: list[Any], more: Any) -> Any:
    """The cards' "more like this" and "more from this video": a hidden textbox and button each, that
    assets/moments.js fills and presses (hidden by CSS, not by Gradio, so they are in the page).
    Returns the "more like this" click, which starts a new search."""
    query, k, mode, per_video = inputs
    with gr.Row(elem_classes="vs-hidden"):
        like_id = gr.Textbox(label="result_id", elem_id="vs-like-id")
        like_go = gr.Button("more like this", elem_id="vs-like-go")
        more_id = gr.Textbox(label="video_id", elem_id="vs-more-id")
        more_go = gr.Button("more from this video", elem_id="vs-more-go")

    def like(result_id: str, k: float = 10, mode: str = MODES[0],
             per_video: float = 1) -> tuple[str, list[dict[str, Any]], str]:
        return _shown(lambda: service.more_like_this(result_id, k, mode, per_video))

    def more_from(query: str | None, video_id: str) -> str:
        try:
            return fmt.more_html(service.more_from_video(query, video_id))
        except DemoError as err:
            return fmt.message_html(str(err), "warn")

    like_go.click(like, [like_id, k, mode, per_video], outputs, api_name="more_like_this")
    more_go.click(more_from, [query, more_id], [more], api_name="more_from_video")
    return like_go.click


def _video_to_text(service: DemoService) -> None:
    with gr.Row():
        with gr.Column(scale=2, min_width=280):
            pick = gr.Dropdown(service.corpus_choices(), value=None, label="Pick a corpus clip",
                               info="its stored embedding is used; its own captions are marked ★")
            clip_id = gr.Textbox("", label="clip_id", visible=False)  # the API's way to name a corpus clip
            preview = gr.HTML(label="preview", visible=False, elem_id="vs-describe-preview")
            video = gr.Video(label="video", sources=["upload"], autoplay=True, loop=True, height=240,
                             elem_id="vs-describe-video")
            examples = gr.Examples([[p] for p in service.examples()], inputs=[video], label="Example clips",
                                   elem_id="vs-describe-examples")
            k = gr.Slider(1, MAX_K, value=10, step=1, label="Captions", info="how many to show")
            button = gr.Button("Describe", variant="primary")
        with gr.Column(scale=3, min_width=280):
            status = gr.Markdown("Pick or upload a clip to see the captions that match it best.",
                                 label="status", elem_classes="vs-status", elem_id="vs-describe-status")
            timeline = gr.HTML("", label="timeline", elem_id="vs-timeline")
            table = _caption_table()

    def describe(video: str | None = None, clip_id: str = "", k: float = 10) -> tuple[Any, str]:
        if not video and not (clip_id or "").strip():
            return [], "Upload a clip or pick one from the corpus first."
        try:
            result = service.search_video(video, clip_id, k)
        except DemoError as err:
            return [], _warn(err)
        return fmt.caption_table(result), fmt.describe_status(result)

    def along(video: str | None = None, clip_id: str = "") -> str:
        """The timeline of a long video (an upload, or a long video of the index); "" for a short clip."""
        if not video and not (clip_id or "").strip():
            return ""
        try:
            entries = service.timeline(video, clip_id)
        except DemoError:
            return ""  # describe() already says what is wrong with the clip
        return fmt.timeline_html(entries, "vs-preview-player" if (clip_id or "").strip() else
                                 "#vs-describe-video video")

    def picked(chosen: str | None, top_k: float) -> tuple[Any, ...]:
        if not chosen:
            return "", gr.update(visible=False), [], "Pick a clip.", ""
        src = service.clip_src(chosen)
        return (chosen, gr.update(value=fmt.preview_html(src, chosen), visible=True), None,
                *describe(None, chosen, top_k), along(None, chosen))

    def uploaded(clip: str | None, top_k: float) -> tuple[Any, ...]:
        """An upload is described at once; one that is no video leaves no empty player behind."""
        table_rows, text = describe(clip, "", top_k)
        failed = clip and isinstance(table_rows, list) and not table_rows
        lines = "" if failed else along(clip, "")
        return (None, "", gr.update(visible=False), table_rows, text, lines, None if failed else gr.update())

    targets = [pick, clip_id, preview, table, status, timeline, video]
    button.click(describe, [video, clip_id, k], [table, status], api_name="search_video").then(
        along, [video, clip_id], [timeline], api_name="timeline")
    pick.input(picked, [pick, k], [clip_id, preview, video, table, status, timeline], api_visibility="private")
    video.upload(uploaded, [video, k], targets, api_visibility="private")
    examples.load_input_event.then(uploaded, [video, k], targets, api_visibility="private").then(
        None, js=_reveal("vs-describe-status"))


def _caption_table() -> gr.Dataframe:
    """Video -> Text's captions; the column widths leave "0.8102" and "test-000002" whole at 390 px."""
    return gr.Dataframe(headers=fmt.CAPTION_HEADERS, datatype=["number", "number", "str", "str", "str"],
                        interactive=False, wrap=True, label="captions", max_height=720, elem_classes="vs-table",
                        elem_id="vs-captions", column_widths=["12%", "15%", "45%", "17%", "11%"])


def _classification(service: DemoService) -> None:
    presets = [*service.label_presets(), CUSTOM_LABELS]
    with gr.Row():
        with gr.Column(scale=2, min_width=280):
            video = gr.Video(label="video", sources=["upload"], autoplay=True, loop=True, height=240,
                             elem_id="vs-classify-video")
            examples = gr.Examples([[p] for p in service.examples()], inputs=[video], label="Example clips",
                                   elem_id="vs-classify-examples")
            label_set = gr.Dropdown(presets, value=service.preset.labels, label="Label set",
                                    info="fills the labels box; edit it freely")
            labels = gr.Textbox(service.label_preset(service.preset.labels), lines=4, max_lines=8,
                                label="labels", info="comma- or newline-separated", elem_id="vs-labels")
            template = gr.Textbox("{}", label="template",
                                  info="prompt template: {} is replaced by each label, e.g. “a video of {}”")
            button = gr.Button("Classify", variant="primary", elem_id="vs-classify")
        with gr.Column(scale=3, min_width=280):
            top = gr.Label(num_top_classes=5, label="top5", show_label=False, elem_id="vs-label")
            bars = gr.BarPlot(x="label", y="probability", sort="-y", y_lim=[0, None], label="probabilities",
                              show_label=False, x_label_angle=-30, height=260)
            notes = gr.Markdown(label="notes", elem_classes="vs-status")

    def classify(video: str | None, labels: str | None = "", template: str | None = "{}") -> tuple[Any, Any, str]:
        if not video:
            return None, None, "Upload a clip or click an example first."
        if not (labels or "").strip():
            return None, None, "Add at least one label (or pick a label set)."
        try:
            result = service.classify(video, labels, template)
        except DemoError as err:
            return None, None, _warn(err)
        return result.as_dict(), fmt.label_bars(result), fmt.classify_notes(result, service.label_warning(labels))

    def fill(name: str | None) -> Any:
        return gr.update() if not name or name == CUSTOM_LABELS else service.label_preset(name)

    def arrived(clip: str | None, text: str | None, prompt: str | None) -> tuple[Any, ...]:
        """An upload is classified at once; one that is no video leaves no empty player behind."""
        result = classify(clip, text, prompt)
        return (*result, None if result[0] is None and clip else gr.update())

    outputs = [top, bars, notes]
    button.click(classify, [video, labels, template], outputs, api_name="classify")
    # Like the Video -> Text tab: a clip runs as soon as it arrives (upload or example).
    video.upload(arrived, [video, labels, template], [*outputs, video], api_visibility="private")
    examples.load_input_event.then(classify, [video, labels, template], outputs, api_visibility="private").then(
        None, js=_reveal("vs-label"))
    label_set.input(fill, [label_set], [labels], api_visibility="private")
    labels.input(lambda: CUSTOM_LABELS, None, [label_set], api_visibility="private", queue=False)


def _benchmark(service: DemoService, demo: gr.Blocks) -> None:
    gr.Markdown("Text → video retrieval in the model card's format: recall at 1/5/10 (%), median and "
                "mean rank of the right video (lower is better).", elem_classes="vs-status")
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            table = gr.Dataframe(headers=fmt.BENCH_HEADERS, interactive=False, wrap=True, label="table",
                                 show_label=False, elem_classes="vs-table", elem_id="vs-bench-table",
                                 max_height=2000,  # every row: no box that cuts the last one
                                 column_widths=["35%", "13%", "13%", "13%", "13%", "13%"])
            status = gr.Markdown(label="status", elem_classes="vs-status", elem_id="vs-bench-status")
            with gr.Row():
                rerun = gr.Button("Rerun evaluation", variant="secondary", scale=0, min_width=200,
                                  interactive=service.can_rerun(), elem_id="vs-rerun")
                gr.Markdown(fmt.rerun_note(service.can_rerun(), service.rerun_reason()))
        with gr.Column(scale=2, min_width=300):
            curve = gr.Plot(label="recall_at_k", show_label=False, format="png", elem_id="vs-recall")
    with gr.Accordion("Every table of the stored run", open=False):
        details = gr.Markdown(label="details", elem_classes="vs-wide")
    moments = gr.Markdown(label="moments", elem_classes=["vs-status", "vs-wide"], elem_id="vs-moment-bench")
    outputs = [table, curve, status, details]

    def show(view: Any, note: str = "") -> tuple[Any, ...]:
        text = fmt.benchmark_status(view, service.device())
        return (fmt.benchmark_rows(view), fmt.recall_figure(view), f"{note}\n\n{text}" if note else text,
                view.markdown or "No stored run yet.")

    def load() -> tuple[Any, ...]:
        return show(service.benchmark())

    def run(progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 - gradio's idiom
        try:
            return show(service.rerun_benchmark(lambda f, m: progress(f, desc=m)))
        except DemoError as err:
            return show(service.benchmark(), _warn(err))

    demo.load(load, None, outputs, api_name="benchmark")
    demo.load(service.moment_benchmark, None, [moments], api_name="moment_benchmark")
    # Progress shows over the table only, so the status line stays readable during a rerun.
    rerun.click(run, None, outputs, api_name="rerun_benchmark", concurrency_limit=1, concurrency_id="evaluate",
                show_progress_on=[table])
