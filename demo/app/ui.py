"""The Gradio page: a header and four tabs, each calling one :class:`~demo.app.service.DemoService` method.

Callbacks are a few lines: guard empty input, call the service, format the result
(:mod:`demo.app.format`). A :class:`~demo.errors.DemoError` becomes a message in the
page, never an error popup, and the app keeps serving. Named API endpoints:
``search_text``, ``search_video``, ``classify``, ``benchmark`` (and ``rerun_benchmark``).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from demo.app import format as fmt
from demo.app.header import header_html
from demo.app.service import MAX_K, MODES, DemoService
from demo.errors import DemoError
from demo.models.labels import LABEL_PRESETS
from demo.presets import ASSETS

CSS = ASSETS / "app.css"
CUSTOM_LABELS = "custom"
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
    """Keyword arguments for ``Blocks.launch``: theme, css and the only folders served."""
    return {"theme": theme(), "css_paths": [CSS], "allowed_paths": service.media_dirs(),
            "max_file_size": f"{service.config.max_upload_mb:g}mb", "footer_links": ["api"]}


def build_demo(service: DemoService) -> gr.Blocks:
    """The whole page; models are already loaded in ``service``."""
    with gr.Blocks(title="Video search · CLIP4Clip + X-CLIP", analytics_enabled=False) as demo:
        gr.HTML(header_html(service.info(), service.vocabulary(), service.device()), elem_id="vs-header")
        with gr.Tabs():
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
    with gr.Row(equal_height=True):
        query = gr.Textbox(label="Describe the video you want", placeholder="e.g. " + examples[0],
                           scale=5, autofocus=True, max_length=1000, elem_id="vs-query")
        button = gr.Button("Search", variant="primary", scale=1, elem_id="vs-search")
    with gr.Row():
        k = gr.Slider(1, MAX_K, value=10, step=1, label="Results (top-k)", scale=2)
        mode = gr.Radio(list(MODES), value=MODES[0], label="Search", scale=2,
                        info="binary: Hamming search on sign codes, then cosine rerank of the top 100")
    tries = gr.Examples([[q] for q in examples], inputs=[query], label="Try one of these")
    status = gr.Markdown(elem_classes="vs-status")
    results = gr.HTML(fmt.message_html("Results appear here: type a query or click an example."),
                      elem_id="vs-results")
    with gr.Accordion("Results as JSON", open=False):
        as_json = gr.JSON(label="hits")
    outputs = [results, as_json, status]

    def search(text: str | None, top_k: float, how: str) -> tuple[str, list[dict[str, Any]], str]:
        if not (text or "").strip():
            hint = f"Type what should happen in the video first, e.g. “{examples[0]}”."
            return fmt.message_html(hint), [], ""
        try:
            result = service.search_text(text, top_k, how)
        except DemoError as err:
            return fmt.message_html(str(err), "warn"), [], _warn(err)
        return fmt.results_html(result), fmt.results_json(result), fmt.search_status(result)

    button.click(search, [query, k, mode], outputs, api_name="search_text")
    query.submit(search, [query, k, mode], outputs, api_visibility="private")
    tries.load_input_event.then(search, [query, k, mode], outputs, api_visibility="private")


def _video_to_text(service: DemoService) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            pick = gr.Dropdown(service.corpus_choices(), value=None, label="Pick a corpus clip",
                               info="its stored embedding is used; its own captions are marked ★")
            video = gr.Video(label="…or upload a clip", sources=["upload"], autoplay=True, loop=True,
                             height=240, elem_id="vs-describe-video")
            example_clips = service.examples()
            examples = gr.Examples([[p] for p in example_clips], inputs=[video], label="Example clips")
            k = gr.Slider(1, MAX_K, value=10, step=1, label="Captions")
            button = gr.Button("Describe", variant="primary")
        with gr.Column(scale=3):
            status = gr.Markdown("Pick or upload a clip to see the captions that match it best.",
                                 elem_classes="vs-status")
            table = gr.Dataframe(headers=fmt.CAPTION_HEADERS, datatype=["number", "number", "str", "str", "str"],
                                 interactive=False, wrap=True, label="Ranked captions", max_height=720,
                                 elem_classes="vs-table",
                                 column_widths=["8%", "11%", "53%", "17%", "11%"])

    def describe(clip: str | None, clip_id: str | None, top_k: float) -> tuple[Any, str]:
        if not clip and not clip_id:
            return [], "Upload a clip or pick one from the corpus first."
        try:
            result = service.search_video(clip, clip_id, top_k)
        except DemoError as err:
            return [], _warn(err)
        return fmt.caption_table(result), fmt.describe_status(result)

    def picked(clip_id: str | None, top_k: float) -> tuple[Any, ...]:
        if not clip_id:
            return None, [], "Pick a clip."
        return (service.clip_file(clip_id), *describe(None, clip_id, top_k))

    def uploaded(clip: str | None, top_k: float) -> tuple[Any, ...]:
        return (None, *describe(clip, None, top_k))

    button.click(describe, [video, pick, k], [table, status], api_name="search_video")
    pick.input(picked, [pick, k], [video, table, status], api_visibility="private")
    video.upload(uploaded, [video, k], [pick, table, status], api_visibility="private")
    examples.load_input_event.then(uploaded, [video, k], [pick, table, status], api_visibility="private")


def _classification(service: DemoService) -> None:
    presets = [*LABEL_PRESETS, CUSTOM_LABELS]
    with gr.Row():
        with gr.Column(scale=2):
            video = gr.Video(label="Clip", sources=["upload"], autoplay=True, loop=True, height=240,
                             elem_id="vs-classify-video")
            example_clips = service.examples()
            examples = gr.Examples([[p] for p in example_clips], inputs=[video], label="Example clips")
            label_set = gr.Dropdown(presets, value=service.preset.labels, label="Label set",
                                    info="fills the labels box; edit it freely")
            labels = gr.Textbox(service.label_preset(service.preset.labels), lines=4, max_lines=8,
                                label="Labels (comma- or newline-separated)", elem_id="vs-labels")
            template = gr.Textbox("{}", label="Prompt template",
                                  info="{} is replaced by each label, e.g. “a video of {}”")
            button = gr.Button("Classify", variant="primary", elem_id="vs-classify")
        with gr.Column(scale=3):
            top = gr.Label(num_top_classes=5, label="Top 5", elem_id="vs-label")
            bars = gr.BarPlot(x="label", y="probability", sort="-y", y_lim=[0, None], label="Probabilities",
                              x_label_angle=-30, height=260)
            notes = gr.Markdown(elem_classes="vs-status")

    def classify(clip: str | None, text: str | None, prompt: str | None) -> tuple[Any, Any, str]:
        if not clip:
            return None, None, "Upload a clip or click an example first."
        if not (text or "").strip():
            return None, None, "Add at least one label (or pick a label set)."
        try:
            result = service.classify(clip, text, prompt)
        except DemoError as err:
            return None, None, _warn(err)
        return result.as_dict(), fmt.label_bars(result), fmt.classify_notes(result)

    def fill(name: str | None) -> Any:
        return gr.update() if not name or name == CUSTOM_LABELS else service.label_preset(name)

    outputs = [top, bars, notes]
    button.click(classify, [video, labels, template], outputs, api_name="classify")
    examples.load_input_event.then(classify, [video, labels, template], outputs, api_visibility="private")
    label_set.input(fill, [label_set], [labels], api_visibility="private")
    labels.input(lambda: CUSTOM_LABELS, None, [label_set], api_visibility="private", queue=False)


def _benchmark(service: DemoService, demo: gr.Blocks) -> None:
    gr.Markdown("Text → video retrieval in the model card's format: recall at 1/5/10 (%), median and "
                "mean rank of the right video (lower is better).", elem_classes="vs-status")
    with gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(headers=fmt.BENCH_HEADERS, interactive=False, wrap=True, label="Retrieval",
                                 elem_classes="vs-table",
                                 column_widths=["40%", "12%", "12%", "12%", "12%", "12%"])
            status = gr.Markdown(elem_classes="vs-status")
            with gr.Row():
                rerun = gr.Button("Rerun evaluation", variant="secondary", scale=0, min_width=200)
                gr.Markdown(f"Train the embedded models again: `{fmt.TRAIN_COMMAND}`")
        with gr.Column(scale=2):
            curve = gr.Plot(label="Recall at K", show_label=False, format="png")
    with gr.Accordion("Every table of the stored run", open=False):
        details = gr.Markdown()
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
    rerun.click(run, None, outputs, api_name="rerun_benchmark", concurrency_limit=1, concurrency_id="evaluate")
