"""Turning the service's results into what the Gradio components show (pure functions).

HTML built here escapes every caption and id; local clip files are served through
Gradio's file route (``gradio_api/file=...``), which only answers for the folders the
app allows (see :func:`demo.app.ui.launch_options`).
"""

from __future__ import annotations

import html
import textwrap
from typing import TYPE_CHECKING, Any

from demo.index.segments import format_span, format_time

if TYPE_CHECKING:
    from demo.app.results import VideoHit, VideoMoments
    from demo.app.service import BenchmarkView, DescribeResult, SearchResult
    from demo.models.xclip import Classification
    from demo.search.timeline import TimelineEntry

METRICS = ("R@1", "R@5", "R@10", "MdR", "MnR")  # the model card's columns
BENCH_HEADERS = ["Model", *METRICS]
CAPTION_HEADERS = ["Rank", "Score", "Caption", "From clip", "Own"]
TRAIN_COMMAND = "python -m demo train --preset embedded"


def message_html(text: str, kind: str = "info") -> str:
    """A friendly box in the results area (``kind``: info or warn)."""
    return f'<div class="vs-message vs-{kind}">{html.escape(text)}</div>'


def results_html(result: SearchResult) -> str:
    """Search results as a grid of autoplaying, muted clips; a moment plays from its start (and loops
    over its stretch, see assets/moments.js) and shows start–end. Each card offers "more like this",
    and a moment "more from this video"."""
    if not result.hits:
        return message_html("The index is empty: nothing to show.", "warn")
    return f'<div class="vs-grid">{"".join(_card(hit) for hit in result.hits)}</div>'


def _card(hit: VideoHit) -> str:
    start, end = hit.start, hit.end
    title = html.escape(hit.id)
    when, actions = "", ""
    if hit.window:
        actions = f'<button class="vs-act" data-like="{html.escape(hit.window)}">More like this</button>'
    if start is not None and end is not None:
        when = (f'<button class="vs-time" data-seek="{start:g}" title="play from the start of the moment">'
                f"{format_span(start, end)}</button>")
        actions += f'<button class="vs-act" data-more="{title}">More from this video</button>'
    if hit.src and start is not None:
        media = (f'<video src="{html.escape(hit.src)}#t={start:g},{end:g}" data-start="{start:g}" data-end="{end:g}" '
                 f'autoplay muted playsinline preload="auto" title="{title}"></video>')
    elif hit.src:
        media = (f'<video src="{html.escape(hit.src)}" autoplay loop muted playsinline '
                 f'preload="auto" title="{title}"></video>')
    else:
        media = '<div class="vs-missing">clip not available</div>'
    return (f'<figure class="vs-card">{media}<figcaption>'
            f'<div class="vs-meta"><span class="vs-rank">#{hit.rank}</span>{when}'
            f'<span class="vs-score" title="cosine similarity">{hit.score:.3f}</span></div>'
            f'<p class="vs-caption">{html.escape(hit.caption)}</p>'
            f'<p class="vs-id">{title}</p><div class="vs-actions">{actions}</div></figcaption></figure>')


def results_json(result: SearchResult) -> list[dict[str, Any]]:
    """One dict per hit; ``video`` is the URL the page plays (relative to the app for local files); a
    moment adds ``start``/``end`` (seconds) and every hit its ``window`` (the id "more like this" takes)."""
    rows = []
    for h in result.hits:
        row: dict[str, Any] = {"rank": h.rank, "id": h.id, "score": round(h.score, 6), "caption": h.caption,
                               "video": h.src}
        if h.start is not None:
            row.update(start=h.start, end=h.end)
        if h.window is not None and (h.start is not None or h.window != h.id):
            row["window"] = h.window
        rows.append(row)
    return rows


def search_status(result: SearchResult) -> str:
    """The line above the results; any notes (unknown words, a low best score, a cut query) follow
    as warnings, so a guess never reads like a match."""
    shown = result.query if len(result.query) <= 120 else result.query[:119] + "…"
    what = "moments" if result.moments else "videos"
    asked = f"*{html.escape(shown)}*" if result.kind == "text" else html.escape(shown)
    line = (f"**{len(result.hits)}** {what} from {result.corpus:,} videos for {asked} · "
            f"encode **{result.encode_ms:.1f} ms** · search **{result.search_ms:.2f} ms** ({result.mode})")
    return "\n\n".join([line, *(f"⚠️ {html.escape(n)}" for n in result.notes)])


def more_html(found: VideoMoments) -> str:
    """"More from this video": its player, a timeline with every matching moment marked (darker =
    better match), and the moments as buttons that play from their start."""
    if not found.moments:
        return message_html(f"Nothing in {found.video_id} matches “{found.query}”.")
    player = "vs-more-player"
    src = html.escape(found.src or "")
    length = max(found.duration, max(m.end or 0.0 for m in found.moments), 1e-6)
    best = max(m.score for m in found.moments)
    low = min(m.score for m in found.moments)
    marks, chips = [], []
    for m in found.moments:
        start, end = m.start or 0.0, m.end or 0.0
        strength = 1.0 if best == low else 0.35 + 0.65 * (m.score - low) / (best - low)
        span = format_span(start, end)
        place = f"left:{100 * start / length:.2f}%;width:{100 * (end - start) / length:.2f}%"
        marks.append(f'<button class="vs-seg" data-seek="{start:g}" data-player="{player}" title="{span} · '
                     f'{m.score:.3f}" style="{place};opacity:{strength:.2f}"></button>')
        chips.append(f'<button class="vs-moment" data-seek="{start:g}" data-player="{player}">{span}'
                     f' <span class="vs-score">{m.score:.3f}</span></button>')
    first = max(found.moments, key=lambda m: m.score).start or 0.0  # the player opens at the best moment
    video = (f'<video id="{player}" src="{src}#t={first:g}" data-start="{first:g}" controls muted playsinline '
             'preload="auto"></video>' if found.src else '<div class="vs-missing">video not available</div>')
    count = f"{len(found.moments)} moments match" if len(found.moments) > 1 else "One moment matches"
    return (f'<section class="vs-more"><h3>More from {html.escape(found.video_id)} <span class="vs-id">'
            f'{html.escape(found.title)} · {format_time(found.duration)} long</span></h3>'
            f'<p class="vs-note">{count} “{html.escape(found.query)}” (darker: closer); click one to play it.'
            f'</p>{video}<div class="vs-timeline-bar" title="the whole video">{"".join(marks)}</div>'
            f'<div class="vs-moments">{"".join(chips)}</div></section>')


def timeline_html(entries: list[TimelineEntry], player: str | None = None) -> str:
    """Video -> text along a long video: one line per stretch (start–end, its best caption); with
    ``player`` (an element id) each time plays that stretch."""
    if not entries:
        return ""
    target = f' data-player="{html.escape(player)}"' if player else ""
    items = []
    for e in entries:
        span = format_span(e.start, e.end)
        when = f'<button class="vs-time" data-seek="{e.start:g}"{target}>{span}</button>' if player else \
            f'<span class="vs-time">{span}</span>'
        text = html.escape(e.caption) if e.caption else f"<em>skipped: {html.escape(e.note or '')}</em>"
        items.append(f'<li>{when} <span class="vs-caption">{text}</span> <span class="vs-score">{e.score:.3f}</span>'
                     "</li>")
    return f'<div class="vs-timeline"><h4>Timeline</h4><ol>{"".join(items)}</ol></div>'


def preview_html(src: str | None, clip_id: str) -> str:
    """A corpus clip playing in the Video -> Text tab (from its URL or the app's media route)."""
    if not src:
        return message_html(f"The clip of {clip_id} is not available here; its stored embedding is used.", "warn")
    return (f'<video class="vs-preview" id="vs-preview-player" src="{html.escape(src)}" autoplay loop muted '
            f'playsinline controls title="{html.escape(clip_id)}"></video>')


def caption_rows(result: DescribeResult) -> list[list[Any]]:
    """Video -> text table rows (see CAPTION_HEADERS); the clip's own captions are marked."""
    return [[h.rank, round(h.score, 4), h.caption, h.video_id,
             "★ own" if result.clip_id is not None and h.video_id == result.clip_id else ""]
            for h in result.captions]


def caption_table(result: DescribeResult) -> Any:
    """The rows as a styled table: the clip's own captions highlighted."""
    import pandas as pd

    frame = pd.DataFrame(caption_rows(result), columns=CAPTION_HEADERS)
    own = frame["Own"] != ""
    return frame.style.apply(
        lambda row: ["background-color: rgba(99, 102, 241, 0.14); font-weight: 600" if own[row.name] else ""
                     for _ in row], axis=1).format({"Score": "{:.4f}"})


def describe_status(result: DescribeResult) -> str:
    own = sum(1 for h in result.captions if h.video_id == result.clip_id)
    where = (f"corpus clip **{html.escape(result.clip_id)}** ({own} of its own captions in the list, "
             "marked ★)" if result.clip_id else "your clip")
    encode = "stored embedding" if result.clip_id and result.encode_ms < 1 else f"encode {result.encode_ms:.0f} ms"
    source = f" · {html.escape(result.source)}" if result.source else ""
    return f"Captions for {where} · {encode} · search {result.search_ms:.2f} ms{source}"


def label_bars(result: Classification) -> Any:
    import pandas as pd

    return pd.DataFrame({"label": list(result.labels), "probability": [round(p, 4) for p in result.probs]})


def classify_notes(result: Classification, warning: str | None = None) -> str:
    """What the numbers mean, then any notes about this clip and label set."""
    lines = [f"Scored **{result.num_labels}** labels; the top {len(result.labels)} are shown. The percentages are "
             "X-CLIP's softmax over the labels given, so they always sum to 100% and say which label fits best, "
             "not how well: a clip that fits none still puts almost all weight on one."]
    if result.similarities:
        lines.append("Raw similarity (cosine of the clip's and the label's embeddings): "
                     + ", ".join(f"{html.escape(label)} {s:.3f}" for label, s in
                                 zip(result.labels, result.similarities, strict=True)) + ".")
    if warning:
        lines.append(f"⚠️ {html.escape(warning)}")
    lines += [f"- note: {html.escape(n)}" for n in result.notes]
    return "\n\n".join(lines)


def _cells(metrics: dict[str, Any]) -> list[str]:
    out = []
    for key in METRICS:
        v = metrics.get(key)
        out.append("–" if v is None else f"{float(v):g}" if key == "MdR" else f"{float(v):.2f}")
    return out


def benchmark_rows(view: BenchmarkView) -> list[list[str]]:
    """Model | R@1 | R@5 | R@10 | MdR | MnR: this model's text -> video rows, then the published ones."""
    rows = [[str(r.get("name")), *_cells(r.get("metrics") or {})] for r in view.rows if r.get("task") == "t2v"]
    if not rows:
        rows = [["this model: not yet evaluated", *["–"] * len(METRICS)]]
    rows += [[f"published, WebVid-10k: {name}", *_cells(m)] for name, m in view.published.items()]
    return rows


def distinct_curves(rows: list[dict[str, Any]]) -> list[tuple[str, list[float]]]:
    """(label, R@K curve) of the text -> video rows, one entry per distinct curve: rows whose
    curves are equal (binarised + rerank that kept every exact rank) share a line and a label.

    >>> distinct_curves([{"task": "t2v", "name": "a", "recall_curve": [1.0, 2.0]},
    ...                  {"task": "t2v", "name": "b", "recall_curve": [1.0, 2.0]},
    ...                  {"task": "v2t", "name": "c", "recall_curve": [3.0]}])
    [('a = b', [1.0, 2.0])]
    """
    groups: dict[tuple[float, ...], list[str]] = {}
    for r in rows:
        curve = tuple(round(float(x), 3) for x in r.get("recall_curve") or [])
        if r.get("task") == "t2v" and curve:
            groups.setdefault(curve, []).append(str(r.get("name")))
    return [(" = ".join(names), list(curve)) for curve, names in groups.items()]


def recall_figure(view: BenchmarkView) -> Any:
    """R@K for K = 1..50 of this model's text -> video rows (one line per distinct curve); the
    published WebVid-10k rows as faint marks at K = 1, 5, 10 (different data: for scale only).
    A matplotlib Figure, made without pyplot's global state; the legend sits under the axes."""
    from matplotlib.figure import Figure

    curves = distinct_curves(view.rows)
    # Labels of equal curves run long ("a = a, binarised + rerank100 = ..."): wrapped to the figure's width,
    # the legend below the axes grows by their lines instead of running off both sides.
    labels = [textwrap.fill(label, 78, subsequent_indent="  ") for label, _ in curves]
    lines = sum(label.count("\n") + 1 for label in labels) + len(view.published)
    fig = Figure(figsize=(6.4, 4.6 + 0.28 * lines), dpi=100, layout="constrained")
    ax = fig.subplots()
    for (label, curve), shown in zip(curves, labels, strict=True):
        # A binarised search that keeps nearly every exact rank lies on its exact curve: dashed on top.
        dashed = all("binarised" in name for name in label.split(" = "))
        ax.plot(range(1, len(curve) + 1), curve, "--" if dashed else "-", lw=1.6 if dashed else 2.6, label=shown)
    for name, m in view.published.items():
        ax.plot([1, 5, 10], [m["R@1"], m["R@5"], m["R@10"]], ":", marker="o", ms=3, lw=1, alpha=0.45,
                color="grey", label=f"published, WebVid-10k: {name}")
    ax.set_xscale("log")  # K = 1, 5, 10 (the table's columns) spread out; the tail to 50 stays visible
    ticks = [1, 2, 5, 10, 20, 50] if curves else [1, 2, 5, 10]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set(xlabel="K", ylabel="R@K (%)", ylim=(0, 101), xlim=(1, ticks[-1]))
    ax.set_title("Text → video recall at K", fontsize=11)
    ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=9, frameon=False)
    return fig


def rerun_note(allowed: bool, reason: str | None) -> str:
    """Beside the rerun button: what it does, or why it is off here."""
    if reason:
        return f"Rerun is off: {html.escape(reason)}."
    if not allowed:
        return ("Reruns are for the operator on a shared server: `python -m demo evaluate`, or start the app "
                "with `--allow-rerun`.")
    return f"Reruns the test split in a separate process. Train the embedded models again: `{TRAIN_COMMAND}`"


def benchmark_status(view: BenchmarkView, device: str) -> str:
    if "error" in view.info:
        return f"⚠️ {html.escape(str(view.info['error']))}"
    if not view.rows:
        return ("**Not yet evaluated.** Press *Rerun evaluation* (the embedded world's test split) or run "
                f"`python -m demo evaluate`. Running on **{html.escape(device)}**.")
    info = view.info
    parts = [f"Test set: {info['test_set']}" if info.get("test_set") else "",
             f"evaluated on {info['device']}" if info.get("device") else "",
             f"{info['created']}" if info.get("created") else "",
             f"{info['seconds']:g} s" if isinstance(info.get("seconds"), int | float) else ""]
    text = " · ".join(html.escape(str(p)) for p in parts if p)
    return (f"{text}.  \nThis app runs on **{html.escape(device)}**. Published rows are WebVid-10k "
            "(different data): for scale only.")
