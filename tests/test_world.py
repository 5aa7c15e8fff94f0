"""Tests for the procedural world: determinism, captions, splits, pairs, rendering, synth."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

import demo.world as world
from demo.world import (
    BACKGROUNDS,
    COLOURS,
    EVENTS,
    RELATIONS,
    SHAPES,
    ClipAttributes,
    WorldConfig,
    WorldObject,
    clip_event,
    clip_spec_by_id,
    clip_specs,
    draw_split,
    event_labels,
    render,
    synth,
    vocabulary,
)
from demo.world.frame_truths import LAYOUT_GRID
from demo.world.render import RGB
from demo.world.sampling import TURN_DEG_PER_S
from demo.world.shapes import SYMMETRY, shape_extents
from demo.world.text import EVENT_PHRASES, MAX_WORDS, RELATION_PHRASES, caption_length

SMALL = WorldConfig(n_train=400, n_val=80, n_test=240)
# Glue words the caption grammar may use besides the vocabulary.
FUNCTION_WORDS = {"a", "an", "the", "and", "while", "on", "over", "against", "in", "front", "of",
                  "with", "background", "video", "picture", "at", "faint", "empty"}  # fmt: skip
REVERSE = {"moving left": "moving right", "moving up": "moving down", "growing": "shrinking",
           "appearing": "disappearing", "turning clockwise": "turning anticlockwise",
           "approaching": "moving apart"}  # fmt: skip
REVERSE.update({v: k for k, v in REVERSE.items()})
REVERSE.update({"bouncing": "bouncing", "staying still": "staying still"})


def _pairs(specs: list[world.ClipSpec]) -> list[tuple[world.ClipSpec, world.ClipSpec]]:
    by_pair: dict[str, list[world.ClipSpec]] = {}
    for s in specs:
        if s.attributes.pair is not None:
            by_pair.setdefault(s.attributes.pair, []).append(s)
    assert all(len(v) == 2 for v in by_pair.values())
    return [(v[0], v[1]) for v in by_pair.values()]


def _empty(spec: world.ClipSpec) -> world.ClipSpec:
    """The same clip with its objects removed: the bare background."""
    return dataclasses.replace(spec, attributes=dataclasses.replace(spec.attributes, objects=()))


def test_attributes_round_trip_through_their_json_rows() -> None:
    for spec in clip_specs(SMALL, "val")[:50]:
        row = json.loads(json.dumps(spec.attributes.to_dict()))
        assert ClipAttributes.from_dict(row) == spec.attributes
        assert json.dumps(ClipAttributes.from_dict(row).to_dict()) == json.dumps(row)
    assert list(row) == ["objects", "background", "relation", "heldout", "pair"]
    with pytest.raises(ValueError, match="keys"):
        WorldObject.from_dict({"shape": "star"})


def test_specs_and_frames_are_deterministic() -> None:
    first = clip_specs(SMALL, "val")
    again = list(draw_split(SMALL, "val"))  # regenerated from scratch, not from the cache
    assert [(s.id, s.seed, s.captions, s.attributes) for s in first] == [
        (s.id, s.seed, s.captions, s.attributes) for s in again
    ]
    for a, b in zip(first[:3], again[:3], strict=True):
        frames = render(a)
        assert np.array_equal(frames, render(b)) and np.array_equal(frames, render(a))

    other = clip_specs(dataclasses.replace(SMALL, seed=1), "val")
    assert [s.captions[0] for s in other[:20]] != [s.captions[0] for s in first[:20]]
    assert not np.array_equal(render(other[0])[:1], render(first[0])[:1])


def test_render_shape_and_visible_objects() -> None:
    for spec in clip_specs(SMALL, "test")[:12]:
        frames = render(spec)
        t = spec.num_frames
        assert frames.shape == (t, 128, 128, 3) and frames.dtype == np.uint8
        assert t == round(spec.duration * 12) and 24 <= t <= 48
        mid = t // 2
        bare = render(_empty(spec))[mid].astype(int)
        for obj in spec.attributes.objects:
            x, y, _, _, opacity = world.object_state(obj, mid, t - 1)
            assert opacity > 0.3  # the middle frame shows every object (still captions rely on it)
            pixel = frames[mid, int(y), int(x)].astype(int)
            expected = (1 - opacity) * bare[int(y), int(x)] + opacity * np.array(RGB[obj.colour])
            assert np.abs(pixel - bare[int(y), int(x)]).sum() > 60, (spec.id, obj)
            assert np.abs(pixel - expected).max() < 12, (spec.id, obj, pixel, expected)


def test_other_frame_sizes_and_bad_configs() -> None:
    spec = dataclasses.replace(clip_specs(SMALL, "test")[0], size=64)
    assert render(spec).shape == (spec.num_frames, 64, 64, 3)
    with pytest.raises(ValueError, match="held-out"):
        WorldConfig(heldout=(("grey", "star"),))
    with pytest.raises(ValueError, match="split"):
        clip_specs(SMALL, "dev")


def test_canonical_caption_states_every_attribute() -> None:
    for spec in clip_specs(SMALL, "test"):
        attrs, canonical = spec.attributes, spec.captions[0]
        assert canonical.endswith(f" {attrs.background} background")
        nouns = [f"{o.size} {o.colour} {o.shape}" for o in attrs.objects]
        if attrs.relation is not None:
            assert len(nouns) == 2
            phrase = RELATION_PHRASES[attrs.relation][0][0]
            assert f"{nouns[0]} and a {nouns[1]} {phrase}" in canonical.replace(" an ", " a ")
        else:
            for noun, o in zip(nouns, attrs.objects, strict=True):
                assert f"{noun} {o.event}" in canonical, (canonical, o)


def test_every_caption_names_each_object_and_its_event() -> None:
    for spec in clip_specs(SMALL, "val") + clip_specs(SMALL, "train")[:100]:
        attrs = spec.attributes
        assert len(spec.captions) == 5 and len(set(spec.captions)) == 5
        for caption in spec.captions:
            for o in attrs.objects:
                if attrs.relation is not None:
                    assert f"{o.colour} {o.shape}" in caption
                    continue
                forms = [p for pair in EVENT_PHRASES[o.event] for p in pair]
                pattern = rf"{o.colour} {o.shape} ({'|'.join(map(re.escape, forms))})(,| |$)"
                assert re.search(pattern, caption), (caption, o.event)
            if attrs.relation is not None:
                forms = [p for pair in RELATION_PHRASES[attrs.relation] for p in pair]
                assert any(f in caption for f in forms), caption
        motion = {p for phrases in EVENT_PHRASES.values() for pair in phrases for p in pair}
        for still in spec.still_captions:
            assert all(o.colour in still and o.shape in still for o in attrs.objects)
            assert not any(re.search(rf"\b{re.escape(m)}\b", still) for m in motion), still


# Words that only phrases of that event may use (checked against the reverse event too).
KEYWORDS = {
    "moving left": {"left"}, "moving right": {"right"}, "moving up": {"up", "rising", "rises", "upward"},
    "moving down": {"down", "sinking", "sinks", "downward", "falling", "falls"},
    "turning clockwise": {"clockwise"}, "turning anticlockwise": {"anticlockwise", "counterclockwise"},
    "growing": {"growing", "grows", "bigger", "expanding", "expands", "larger"},
    "shrinking": {"shrinking", "shrinks", "smaller", "contracting", "contracts"},
    "appearing": {"appearing", "appears", "in", "into", "emerging", "emerges"},
    "disappearing": {"disappearing", "disappears", "out", "vanishing", "vanishes", "away"},
    "bouncing": {"bouncing", "bounces", "hopping", "hops", "jumping", "jumps"},
    "staying still": {"still", "resting", "rests", "not"},
    "approaching": {"approaching", "approach", "toward", "together", "closing", "close"},
    "moving apart": {"apart", "away", "separating", "separate"},
    "passing": {"passing", "pass", "past", "crossing", "cross"},
}  # fmt: skip


def test_event_phrases_mean_their_event() -> None:
    table = {**EVENT_PHRASES, **RELATION_PHRASES}
    assert set(table) == set(EVENTS) | set(RELATIONS)
    for event, phrases in table.items():
        assert phrases[0][0].startswith(event)  # the canonical phrase is the event's name
        for phrase in (p for pair in phrases for p in pair):
            words = set(phrase.split())
            assert words & KEYWORDS[event], (event, phrase)
            if REVERSE.get(event, event) != event:
                assert not words & KEYWORDS[REVERSE[event]], (event, phrase)


def _track(spec: world.ClipSpec, obj: WorldObject) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid x, y and area per frame of ``obj`` rendered alone over the clip's background."""
    alone = render(dataclasses.replace(spec, attributes=dataclasses.replace(spec.attributes, objects=(obj,))))
    mask = np.abs(alone.astype(int) - render(_empty(spec))).sum(-1) > 40
    area = mask.sum((1, 2)).astype(float)
    ys, xs = np.indices(mask.shape[1:])
    safe = np.maximum(area, 1)
    return (mask * xs).sum((1, 2)) / safe, (mask * ys).sum((1, 2)) / safe, area


def test_rendered_motion_matches_the_attributes() -> None:
    for spec in clip_specs(SMALL, "test")[:40]:
        tracks = [_track(spec, o) for o in spec.attributes.objects]
        for o, (x, y, area) in zip(spec.attributes.objects, tracks, strict=True):
            ev, msg = o.event, (spec.id, o)
            if ev == "appearing":
                assert area[0] == 0 and area[-1] > 50, msg
            elif ev == "disappearing":
                assert area[0] > 50 and area[-1] == 0, msg
            else:
                assert area.min() > 50, msg
            if ev in ("growing", "shrinking"):
                assert (area[-1] / area[0] > 4) == (ev == "growing") and max(area[-1], area[0]) > 4 * min(
                    area[-1], area[0]
                ), msg
            dx, dy = x[-1] - x[0], y[-1] - y[0]
            travel = 15 if spec.attributes.relation else 40  # relations move each object less
            if ev in ("moving left", "moving right"):
                assert abs(dx) > travel and (dx < 0) == (ev == "moving left") and abs(dy) < 3, msg
            elif ev in ("moving up", "moving down"):
                assert abs(dy) > travel and (dy < 0) == (ev == "moving up") and abs(dx) < 3, msg
            elif ev in ("staying still", "bouncing") or ev.startswith("turning"):
                assert abs(dx) < 1.5 and abs(dy) < 1.5, msg
                assert (y.min() < y[0] - 20) == (ev == "bouncing"), msg
        if spec.attributes.relation in ("approaching", "moving apart"):
            (xa, ya, _), (xb, yb, _) = tracks
            gap = np.hypot(xa - xb, ya - yb)
            assert (gap[-1] < gap[0] - 30) == (spec.attributes.relation == "approaching"), spec.id
        elif spec.attributes.relation == "passing":
            (xa, _, _), (xb, _, _) = tracks
            assert np.sign(xa[0] - xb[0]) == -np.sign(xa[-1] - xb[-1]), spec.id


@pytest.mark.parametrize("event", ["turning clockwise", "turning anticlockwise"])
def test_turning_direction_on_screen(event: str) -> None:
    spec = clip_specs(SMALL, "test")[0]
    diamond = dataclasses.replace(spec.attributes.objects[0], shape="diamond", event=event, x0=64.0, x1=64.0, y0=64.0,
                   y1=64.0, r0=23.0, r1=23.0, fade0=1.0, fade1=1.0, bounce=0.0, bounces=0, angle0=0.0,
                   angle1=30.0 if event == "turning clockwise" else -30.0)  # fmt: skip
    spec = dataclasses.replace(spec, attributes=dataclasses.replace(spec.attributes, objects=(diamond,)))
    frames, bare = render(spec), render(_empty(spec))
    orientation = []
    for i in (0, len(frames) - 1):  # long axis angle from second moments; y points down
        mask = np.abs(frames[i].astype(int) - bare[i]).sum(-1) > 40
        ys, xs = np.nonzero(mask)
        xs, ys = xs - xs.mean(), ys - ys.mean()
        cov_xy, var_x, var_y = (xs * ys).mean(), (xs**2).mean(), (ys**2).mean()
        orientation.append(0.5 * np.degrees(np.arctan2(2 * cov_xy, var_x - var_y)))
    # The diamond starts upright (long axis at 90 degrees); clockwise on screen turns it towards 120.
    turned = orientation[1] - orientation[0]
    assert abs(abs(orientation[0]) - 90) < 3
    assert abs(abs(turned) - 30) < 5 or abs(abs(turned) - 150) < 5
    assert (np.sin(np.radians(2 * turned)) > 0) == (event == "turning clockwise")


def test_captions_fit_clip_token_limit() -> None:
    for spec in clip_specs(SMALL, "test") + clip_specs(SMALL, "train"):
        for caption in spec.captions + spec.still_captions:
            assert len(caption.replace(",", " ").split()) <= MAX_WORDS, caption
            assert caption_length(caption) <= 32, caption


def _tracked_frames(count: int):
    """(spec, frame i, last frame n, each object's rendered track) at the start, middle and end of
    the first ``count`` test clips."""
    for spec in clip_specs(SMALL, "test")[:count]:
        n = spec.num_frames - 1
        tracks = [_track(spec, o) for o in spec.attributes.objects]
        for i in (0, n // 2, n):
            yield spec, i, n, tracks


def test_frame_captions_say_where_each_visible_object_is() -> None:
    rng = np.random.default_rng(0)
    checked = {"empty": 0, "corner": 0}
    for spec, i, n, tracks in _tracked_frames(30):
        objects = spec.attributes.objects
        caption = world.frame_caption(spec.attributes, i, n, rng)
        assert caption_length(caption) <= 32, caption
        visible = [(o, t) for o, t in zip(objects, tracks, strict=True) if t[2][i] > 60]
        if not visible:
            assert caption == f"an empty {spec.attributes.background} background" or "faint" in caption
            checked["empty"] += caption.startswith("an empty")
            continue
        for o, (x, y, _) in visible:
            # the rendered centroid (in pixels of spec.size) lies in the named third of the frame
            third = spec.size / 3
            col = "left" if x[i] < third - 2 else "right" if x[i] > 2 * third + 2 else None
            row = "top" if y[i] < third - 2 else "bottom" if y[i] > 2 * third + 2 else None
            words = re.split(r" and |, ", caption.split(f"{o.colour} {o.shape}", 1)[1])[0].split()
            assert words, (caption, o)
            if col:
                assert col in words, (caption, o, x[i], y[i])
            if row:
                assert row in words, (caption, o, x[i], y[i])
            checked["corner"] += bool(col and row)
    assert checked["empty"] > 0 and checked["corner"] > 0, checked


def test_frame_layout_follows_the_rendered_object() -> None:
    checked = {"lone": 0, "several": 0, "angle": 0}
    g = world.LAYOUT_LONE
    for spec in clip_specs(SMALL, "test")[:40]:
        n = spec.num_frames - 1
        objects = spec.attributes.objects
        for i in (0, n // 2, n):
            values, mask = world.frame_layout(spec.attributes, i, n)
            assert values.shape == mask.shape == (world.LAYOUT_DIM,) and mask[:g].all()
            assert values[:g].min() >= 0.0 and values[:g].max() <= 1.0
            if len(objects) > 1:
                assert not mask[g:].any()
                checked["several"] += 1
                continue
            x, y, area = _track(spec, objects[0])
            if area[i] < 50:
                continue
            # the lone object's x, y match its rendered centroid, and the coverage map peaks there
            assert abs(values[g] * spec.size - x[i]) < 3 and abs(values[g + 1] * spec.size - y[i]) < 3, spec.id
            row, col = np.unravel_index(int(np.argmax(values[:g])), (LAYOUT_GRID,) * 2)
            cell = spec.size / LAYOUT_GRID
            assert abs((col + 0.5) * cell - x[i]) <= cell and abs((row + 0.5) * cell - y[i]) <= cell, spec.id
            assert mask[g + 4] == (objects[0].shape != "circle")
            checked["lone"] += 1
            checked["angle"] += bool(mask[g + 4])
    assert min(checked.values()) > 0, checked


def test_frame_shapes_name_the_visible_objects() -> None:
    seen = {"hidden": 0, "shown": 0}
    for spec, i, n, tracks in _tracked_frames(40):
        objects = spec.attributes.objects
        shapes = world.frame_shapes(spec.attributes, i, n)
        assert shapes.shape == (len(world.SHAPES),) and set(np.unique(shapes)) <= {0.0, 1.0}
        named = {world.SHAPES[k] for k in np.flatnonzero(shapes)}
        assert named <= {o.shape for o in objects}, spec.id
        for o, (_, _, area) in zip(objects, tracks, strict=True):
            if area[i] == 0:  # not drawn at all (appearing / disappearing): not named
                if sum(p.shape == o.shape for p in objects) == 1:
                    assert o.shape not in named, (spec.id, i)
                    seen["hidden"] += 1
            elif area[i] > 50 and o.event not in ("appearing", "disappearing"):
                assert o.shape in named, (spec.id, i)
                seen["shown"] += 1
    assert min(seen.values()) > 0, seen


def test_frame_layout_angle_code_turns_with_the_object() -> None:
    spec = next(s for s in clip_specs(SMALL, "train") if len(s.attributes.objects) == 1
                and s.attributes.objects[0].event == "turning clockwise")
    n = spec.num_frames - 1
    g = world.LAYOUT_LONE
    codes = [world.frame_layout(spec.attributes, i, n)[0][g + 4:g + 6] for i in range(n + 1)]
    order = SYMMETRY[spec.attributes.objects[0].shape]
    step = np.degrees(np.arctan2(codes[1][1], codes[1][0]) - np.arctan2(codes[0][1], codes[0][0]))
    obj = spec.attributes.objects[0]
    assert obj.angle1 - obj.angle0 == pytest.approx(TURN_DEG_PER_S * spec.duration)  # clockwise
    # the code turns by the shape's symmetry order times the angle between two rendered frames
    turn = order * (obj.angle1 - obj.angle0) / n
    assert (step - turn + 180) % 360 - 180 == pytest.approx(0, abs=1e-3)


def test_mirrored_frame_caption_differs_only_in_position_words() -> None:
    rng = np.random.default_rng(1)
    position_words = {"top", "bottom", "left", "right", "middle", "at", "on", "in", "the"}
    negatives = 0
    for spec in clip_specs(SMALL, "test")[:40]:
        n = spec.num_frames - 1
        caption, negative = world.frame_caption_pair(spec.attributes, n // 2, n, rng)
        if negative is None:
            continue
        negatives += 1
        a, b = caption.replace(",", "").split(), negative.replace(",", "").split()
        assert a != b
        assert [w for w in a if w not in position_words] == [w for w in b if w not in position_words]
    assert negatives > 20


def _changed_fields(x: WorldObject, y: WorldObject) -> set[str]:
    return {k for k, v in x.to_dict().items() if y.to_dict()[k] != v}


def test_counterfactual_changes_exactly_one_event() -> None:
    rng = np.random.default_rng(0)
    reversals = 0
    for spec in clip_specs(SMALL, "train")[:150]:
        a = spec.attributes
        b = world.counterfactual(a, rng)
        assert world.canonical_caption(b) != spec.captions[0]
        if a.relation is not None:
            assert b.relation != a.relation and b.objects == a.objects
            reversals += b.relation == REVERSE.get(a.relation)
            continue
        changed = [(x, y) for x, y in zip(a.objects, b.objects, strict=True) if x != y]
        assert len(changed) == 1, changed
        x, y = changed[0]
        assert x.event != y.event and _changed_fields(x, y) <= {"event", "size"}
        assert not (y.shape == "circle" and y.event.startswith("turning"))
        reversals += y.event == REVERSE[x.event]
    assert 30 < reversals < 120  # about half the changes are time reversals


def test_shape_swapped_changes_one_shape_and_never_makes_a_heldout_pair() -> None:
    rng = np.random.default_rng(0)
    held = set(SMALL.heldout)
    new_shapes = set()
    for spec in clip_specs(SMALL, "train")[:200]:
        a = spec.attributes
        b = world.shape_swapped(a, rng, SMALL.heldout)
        assert dataclasses.replace(b, objects=()) == dataclasses.replace(a, objects=())
        changed = [(x, y) for x, y in zip(a.objects, b.objects, strict=True) if x != y]
        assert len(changed) == 1, changed
        x, y = changed[0]
        assert _changed_fields(x, y) == {"shape"}
        assert (y.colour, y.shape) not in held
        assert not (y.shape == "circle" and y.event.startswith("turning"))
        assert world.canonical_caption(b) != world.canonical_caption(a)
        new_shapes.add(y.shape)
    assert new_shapes == set(SHAPES)


def test_vocabulary_covers_every_caption_word() -> None:
    vocab = vocabulary()
    assert vocab["shapes"] == list(SHAPES) and vocab["colours"] == list(COLOURS)
    assert vocab["backgrounds"] == list(BACKGROUNDS) and len(BACKGROUNDS) >= 6
    assert not set(BACKGROUNDS) & set(COLOURS)
    words = {w for items in vocab.values() for item in items for w in item.split()}
    for spec in clip_specs(SMALL, "val") + clip_specs(SMALL, "train")[:200]:
        n = spec.num_frames - 1
        frame_captions = [world.frame_caption(spec.attributes, i, n, np.random.default_rng(i)) for i in (0, n)]
        for caption in spec.captions + spec.still_captions + frame_captions:
            unknown = set(caption.replace(",", " ").split()) - words - FUNCTION_WORDS
            assert not unknown, (caption, unknown)


def test_objects_are_distinct_valid_and_inside_the_frame() -> None:
    counts = np.zeros(4, int)
    for spec in clip_specs(SMALL, "train") + clip_specs(SMALL, "test"):
        objects = spec.attributes.objects
        counts[len(objects)] += 1
        assert len({(o.colour, o.shape) for o in objects}) == len(objects)
        assert spec.attributes.background in BACKGROUNDS
        for o in objects:
            assert o.event in EVENTS
            assert not (o.shape == "circle" and o.event.startswith("turning"))
            for i in range(spec.num_frames):
                x, y, r, angle, _ = world.object_state(o, i, spec.num_frames - 1)
                hx, hy = shape_extents(o.shape, angle)
                assert hx * r <= x <= 128 - hx * r and hy * r <= y <= 128 - hy * r, (spec.id, o)
    share = counts[1:] / counts.sum()
    assert 0.45 < share[0] < 0.65 and 0.2 < share[1] < 0.4 and 0.07 < share[2] < 0.25


def test_heldout_combinations_only_outside_train() -> None:
    heldout = set(SMALL.heldout)
    for spec in clip_specs(SMALL, "train"):
        assert not spec.attributes.heldout
        assert not {(o.colour, o.shape) for o in spec.attributes.objects} & heldout
    for split in ("val", "test"):
        specs = clip_specs(WorldConfig(), split)
        for spec in specs:
            has = bool({(o.colour, o.shape) for o in spec.attributes.objects} & heldout)
            assert spec.attributes.heldout == has
        assert 0.08 < np.mean([s.attributes.heldout for s in specs]) < 0.22


def test_val_and_test_canonical_captions_are_unique() -> None:
    for split in ("val", "test"):
        specs = clip_specs(WorldConfig(), split)
        assert len(specs) == WorldConfig().count(split)
        assert len({s.captions[0] for s in specs}) == len(specs)
        assert [s.id for s in specs] == [f"{split}-{i:06d}" for i in range(len(specs))]


def test_pairs_are_exact_time_reversals() -> None:
    specs = clip_specs(SMALL, "test")
    pairs = _pairs(specs)
    assert 0.18 < 2 * len(pairs) / len(specs) < 0.42
    assert _pairs(clip_specs(SMALL, "train"))  # train has pairs too
    for a, b in pairs:
        assert (a.seed, a.duration) == (b.seed, b.duration)
        assert a.attributes.background == b.attributes.background
        if a.attributes.relation is not None:
            assert b.attributes.relation == REVERSE[a.attributes.relation]
        for oa, ob in zip(a.attributes.objects, b.attributes.objects, strict=True):
            assert (oa.colour, oa.shape) == (ob.colour, ob.shape)
            assert ob.event == REVERSE[oa.event]
            assert (oa.x0, oa.y0) == (ob.x1, ob.y1)
    for a, b in pairs[:6]:
        assert np.array_equal(render(a), render(b)[::-1]), (a.id, b.id)


def test_event_labels_and_clip_event() -> None:
    labels = event_labels()
    assert labels == [*EVENTS, *RELATIONS] and len(set(labels)) == 15
    for spec in clip_specs(SMALL, "val"):
        event = clip_event(spec)
        assert event in labels
        relation = spec.attributes.relation
        assert event == (relation if relation else spec.attributes.objects[0].event)


def test_clip_spec_by_id() -> None:
    specs = clip_specs(SMALL, "test")
    assert clip_spec_by_id(SMALL, specs[17].id) is specs[17]
    for bad in ("test-99999", "dev-000001", "test-abc", "nonsense"):
        with pytest.raises(ValueError, match="clip id"):
            clip_spec_by_id(SMALL, bad)


def _decode(path: Path, n: int) -> np.ndarray:
    from demo import video

    if hasattr(video, "read_frames"):
        return video.read_frames(path, list(range(n)))
    import decord

    return decord.VideoReader(str(path)).get_batch(list(range(n))).asnumpy()


def test_turning_specs_are_lone_turning_clips_of_other_worlds(tmp_path: Path) -> None:
    specs = world.turning_specs((1, 2), SMALL)
    assert len(specs) > 20 and len({s.id for s in specs}) == len(specs)
    assert {s.id.split("-")[1] for s in specs} == {"1", "2"} and {s.split for s in specs} == {"turning"}
    for spec in specs:
        (obj,) = spec.attributes.objects
        assert obj.event in ("turning clockwise", "turning anticlockwise") and obj.event in spec.captions[0]
        assert (obj.colour, obj.shape) not in SMALL.heldout  # drawn from training splits
    own = {json.dumps(s.attributes.to_dict()) for s in clip_specs(SMALL, "train")}
    assert not own & {json.dumps(s.attributes.to_dict()) for s in specs}  # other worlds' clips, not ours
    assert [s.id for s in world.turning_specs((1, 2), SMALL, limit=5)] == [s.id for s in specs[:5]]
    # written as one more split of a world folder, with paths the trainer resolves
    jsonl = world.synth_turning(tmp_path, (1,), SMALL, limit=3, workers=1, progress=False)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["id"] for r in rows] == [s.id for s in specs[:3]]
    assert all((tmp_path / r["path"]).is_file() and r["path"].startswith("clips/turning/") for r in rows)


@pytest.mark.parametrize("workers", [1, 2])
def test_synth_writes_a_resumable_corpus(tmp_path: Path, workers: int) -> None:
    out = synth(tmp_path, SMALL, splits=("val",), limit=3, workers=workers, progress=False)
    assert out == {"val": tmp_path / "val.csv"}
    specs = clip_specs(SMALL, "val")[:3]
    with open(out["val"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(s.captions) for s in specs)
    assert list(rows[0]) == ["path", "caption", "id", "split", "attributes"]
    assert rows[0]["caption"] == specs[0].captions[0] and rows[0]["id"] == specs[0].id
    assert json.loads(rows[0]["attributes"]) == specs[0].attributes.to_dict()
    lines = [json.loads(line) for line in (tmp_path / "val.jsonl").read_text().splitlines()]
    assert [d["id"] for d in lines] == [s.id for s in specs]
    assert lines[1]["still_captions"] == specs[1].still_captions
    paths = [tmp_path / d["path"] for d in lines]
    assert all(p.is_file() for p in paths)
    assert sorted(p.name for p in (tmp_path / "clips" / "val").iterdir()) == sorted(p.name for p in paths)

    decoded = _decode(paths[0], specs[0].num_frames)
    rendered = render(specs[0])
    assert decoded.shape == rendered.shape
    assert np.abs(decoded.astype(int) - rendered).mean() < 6

    if workers == 1:  # resuming keeps finished clips and renders only missing ones
        stamp = paths[0].stat().st_mtime_ns
        paths[1].unlink()
        synth(tmp_path, SMALL, splits=("val",), limit=3, workers=1, progress=False)
        assert paths[0].stat().st_mtime_ns == stamp and paths[1].is_file()


def test_look_changed_changes_one_colour_or_size_and_nothing_else() -> None:
    rng = np.random.default_rng(0)
    held = set(SMALL.heldout)
    kinds: set[str] = set()
    for spec in clip_specs(SMALL, "train")[:200]:
        a = spec.attributes
        b = world.look_changed(a, rng)
        assert b.relation == a.relation and world.canonical_caption(b) != spec.captions[0]
        changed = [(x, y) for x, y in zip(a.objects, b.objects, strict=True) if x != y]
        assert len(changed) == 1, changed
        x, y = changed[0]
        fields = _changed_fields(x, y)
        assert fields in ({"colour"}, {"size"}), fields
        assert (y.colour, y.shape) not in held
        assert not (fields == {"size"} and x.event in ("growing", "shrinking"))  # their size is the event's
        assert world.says_look_change(a, b, world.canonical_caption(b))
        assert not world.says_look_change(a, b, world.canonical_caption(a))
        if fields == {"size"}:  # a caption without sizes fits both clips: not a negative
            assert not world.says_look_change(a, b, f"a {y.colour} {y.shape} {y.event}")
        kinds |= fields
    assert kinds == {"colour", "size"}
