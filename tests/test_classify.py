"""X-CLIP zero-shot classification on a tiny random model saved to disk, and label parsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from demo.errors import InputError, ModelLoadError, VideoDecodeError
from demo.models.labels import LABEL_PRESETS, MAX_LABELS, apply_template, load_preset, parse_labels
from demo.models.xclip import Classification, XClipClassifier
from demo.video.mp4 import write_mp4
from demo.video.preprocess import IMAGENET_MEAN, IMAGENET_STD
from tests.conftest import XCLIP_IMAGE_SIZE as IMAGE_SIZE  # noqa: E402
from tests.conftest import XCLIP_NUM_FRAMES as NUM_FRAMES  # noqa: E402
from tests.conftest import tiny_xclip  # noqa: E402

# The world's event classes, used only if demo.world is not there yet.
FALLBACK_EVENTS = parse_labels(
    "moving left, moving right, moving up, moving down, turning clockwise, turning anticlockwise, "
    "growing, shrinking, bouncing, appearing, disappearing, staying still, approaching, moving apart, passing"
)




@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_xclip(tmp_path_factory.mktemp("xclip"))


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> XClipClassifier:
    return XClipClassifier.from_pretrained(model_dir)


def gray_clip(path: Path, num_frames: int, step: int = 15) -> Path:
    """A clip whose frame i is flat gray 10 + step * i (so a frame's index can be read back)."""
    levels = 10 + step * np.arange(num_frames)
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, 48, 64, 3)).astype(np.uint8)
    write_mp4(path, np.ascontiguousarray(frames), fps=8)
    return path


@pytest.fixture(scope="module")
def clip16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gray_clip(tmp_path_factory.mktemp("clips") / "gray16.mp4", 16)


class Spy:
    """Records the tensors the model's forward receives."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[dict[str, torch.Tensor]] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self.calls.append({k: v.detach().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)})

    def __enter__(self) -> Spy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


# ---- loading ------------------------------------------------------------------------------


def test_loads_settings_from_saved_folder(classifier: XClipClassifier, model_dir: Path) -> None:
    assert (
        json.loads((model_dir / "processor_config.json").read_text())["processor_class"] == "XCLIPProcessor"
    )
    assert classifier.num_frames == NUM_FRAMES
    assert classifier.image_size == IMAGE_SIZE
    assert classifier.mean == pytest.approx(IMAGENET_MEAN)
    assert classifier.std == pytest.approx(IMAGENET_STD)
    assert len(classifier.tokenizer) == 49408  # the real CLIP vocabulary
    assert not classifier.model.training


def test_folder_without_processor_falls_back_to_clip_tokenizer(tmp_path: Path, clip16: Path) -> None:
    folder = tiny_xclip(tmp_path / "bare", processor=False)
    assert not (folder / "processor_config.json").exists()
    clf = XClipClassifier.from_pretrained(folder)
    assert clf.mean == IMAGENET_MEAN and clf.std == IMAGENET_STD and clf.image_size == IMAGE_SIZE
    result = clf.classify(clip16, ["a", "b"])
    assert sum(result.probs) == pytest.approx(1.0, abs=1e-5)


def test_hub_style_preprocessor_config_loads(tmp_path: Path) -> None:
    # microsoft/xclip-base-patch32 ships a pre-v5 preprocessor_config.json (VideoMAE
    # feature extractor, int size) rather than a unified processor_config.json.
    folder = tiny_xclip(tmp_path / "hub", processor=False)
    legacy = {
        "feature_extractor_type": "VideoMAEFeatureExtractor",
        "processor_class": "XCLIPProcessor",
        "do_resize": True,
        "size": IMAGE_SIZE,
        "do_center_crop": True,
        "do_normalize": True,
        "resample": 2,
        "image_mean": [0.5, 0.5, 0.5],  # not ImageNet's, to see that the file is read
        "image_std": [0.25, 0.25, 0.25],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(legacy))
    clf = XClipClassifier.from_pretrained(folder)
    assert clf.mean == pytest.approx((0.5,) * 3) and clf.std == pytest.approx((0.25,) * 3)
    assert clf.image_size == IMAGE_SIZE


def test_missing_folder_raises_model_load_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(ModelLoadError, match="does not exist") as err:
        XClipClassifier.from_pretrained(missing)
    assert str(missing) in str(err.value)


def test_folder_without_weights_raises_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty"):
        XClipClassifier.from_pretrained(tmp_path / "empty")


def test_non_xclip_model_is_refused(tmp_path: Path) -> None:
    from transformers import CLIPConfig

    CLIPConfig().save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="'clip' model"):
        XClipClassifier.from_pretrained(tmp_path)


def test_hub_id_offline_raises_model_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # Offline mode makes the hub lookup fail at once instead of retrying for ~30 s.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="microsoft/xclip-base-patch32"):
        XClipClassifier.from_pretrained("microsoft/xclip-base-patch32")


# ---- classification -----------------------------------------------------------------------


def test_classify_samples_segment_centres_with_imagenet_norm(
    classifier: XClipClassifier, clip16: Path
) -> None:
    labels = ["cat", "dog", "bird", "fish", "horse", "cow"]
    with Spy(classifier.model) as spy:
        result = classifier.classify(clip16, labels, k=6)
    assert len(spy.calls) == 1
    pixels = spy.calls[0]["pixel_values"]
    assert pixels.shape == (1, NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    # Undo ImageNet normalisation and read each frame's gray level back: 16 frames, 8
    # segments of 2, centres at frames 1, 3, ..., 15.
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    levels = ((pixels[0] * std + mean) * 255).mean(dim=(1, 2, 3))
    expected = 10 + 15 * np.arange(1, 16, 2)
    np.testing.assert_allclose(levels.numpy(), expected, atol=4)

    assert isinstance(result, Classification)
    assert sorted(result.labels) == sorted(labels) and result.num_labels == 6
    assert sum(result.probs) == pytest.approx(1.0, abs=1e-5)
    assert list(result.probs) == sorted(result.probs, reverse=True)
    assert result.notes == ()
    assert list(result.as_dict()) == list(result.labels)
    assert json.loads(json.dumps(result.to_json()))["labels"][0]["label"] == result.labels[0]


def test_probabilities_are_softmax_of_logits_per_video(classifier: XClipClassifier, clip16: Path) -> None:
    labels = ["red", "green", "blue"]
    with Spy(classifier.model) as spy:
        result = classifier.classify(clip16, labels, k=3)
    with torch.inference_mode():
        logits = classifier.model(**spy.calls[0]).logits_per_video[0]
    probs = dict(zip(labels, logits.softmax(-1).tolist(), strict=True))
    for label, p in result.as_dict().items():
        assert p == pytest.approx(probs[label], abs=1e-6)


def test_k_limits_results_and_template_reaches_text(classifier: XClipClassifier, clip16: Path) -> None:
    labels = [f"label {i}" for i in range(7)]
    with Spy(classifier.model) as spy:
        top = classifier.classify(clip16, labels, template="a video of {label}", k=2)
    full = classifier.classify(clip16, labels, template="a video of {label}", k=10)
    assert len(top.labels) == 2 and len(full.labels) == 7
    assert top.labels == full.labels[:2] and top.probs == pytest.approx(full.probs[:2])
    ids = spy.calls[0]["input_ids"]
    assert ids.shape[0] == 7
    assert classifier.tokenizer.decode(ids[0], skip_special_tokens=True).strip() == "a video of label 0"
    with pytest.raises(InputError, match="k must be at least 1, got 0"):
        classifier.classify(clip16, labels, k=0)


def test_short_clip_is_repeated_and_noted(classifier: XClipClassifier, tmp_path: Path) -> None:
    clip = gray_clip(tmp_path / "three.mp4", 3, step=80)
    with Spy(classifier.model) as spy:
        result = classifier.classify(clip, ["a", "b"])
    assert spy.calls[0]["pixel_values"].shape[1] == NUM_FRAMES
    assert "clip has 3 frames; repeated to 8" in result.notes


def test_one_label_gets_note(classifier: XClipClassifier, clip16: Path) -> None:
    result = classifier.classify(clip16, ["juggling"])
    assert result.labels == ("juggling",) and result.probs == pytest.approx((1.0,))
    assert any("only one label" in note for note in result.notes)


def test_bad_labels_fail_before_decoding(classifier: XClipClassifier, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.mp4"
    with pytest.raises(InputError, match="no labels"):
        classifier.classify(missing, [" ", ""])
    with pytest.raises(InputError, match="template"):
        classifier.classify(missing, ["a"], template="a video")


@pytest.mark.parametrize(
    "content",
    [b"", b"this is a text file, not a video\n", bytes(np.random.default_rng(0).integers(0, 256, 4096))],
)
def test_non_video_raises_video_decode_error(
    classifier: XClipClassifier, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoDecodeError):
        classifier.classify(path, ["a", "b"])


def test_truncated_video_raises_video_decode_error(
    classifier: XClipClassifier, clip16: Path, tmp_path: Path
) -> None:
    data = clip16.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoDecodeError):
        classifier.classify(path, ["a", "b"])


def test_missing_video_raises_video_decode_error(classifier: XClipClassifier, tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError, match="no such file"):
        classifier.classify(tmp_path / "absent.mp4", ["a", "b"])


# ---- labels -------------------------------------------------------------------------------


def test_parse_labels_commas_newlines_blanks_duplicates() -> None:
    assert parse_labels("cat, dog\nbird,\n\n  fish  ") == ["cat", "dog", "bird", "fish"]
    assert parse_labels("Cat\ncat\nCAT, dog") == ["Cat", "dog"]
    assert parse_labels(["playing  guitar", "a, b", " "]) == ["playing guitar", "a", "b"]


@pytest.mark.parametrize("text", ["", " , \n ,", [], ["", "  "]])
def test_parse_labels_empty(text: str | list[str]) -> None:
    with pytest.raises(InputError, match="no labels given"):
        parse_labels(text)


def test_parse_labels_limit() -> None:
    assert len(parse_labels([f"l{i}" for i in range(MAX_LABELS)])) == MAX_LABELS == 400
    with pytest.raises(InputError, match="got 401, the limit is 400"):
        parse_labels([f"l{i}" for i in range(401)])
    with pytest.raises(InputError, match="got 3, the limit is 2"):
        parse_labels("a,b,c", max_labels=2)


def test_apply_template() -> None:
    assert apply_template(["cat", "dog"], "{}") == ["cat", "dog"]
    assert apply_template(["cat"], "a photo of a {}.") == ["a photo of a cat."]
    assert apply_template(["cat"], "a video of {label}, {label}") == ["a video of cat, cat"]
    assert apply_template(["{x}"], "about {}") == ["about {x}"]  # label braces are kept as text
    for bad in ["a video", "{0}", "{lab}"]:
        with pytest.raises(InputError, match=repr(bad)):
            apply_template(["cat"], bad)


def test_kinetics_preset() -> None:
    labels = load_preset("kinetics400")
    assert len(labels) == 400 and len({x.lower() for x in labels}) == 400
    assert labels[0] == "abseiling" and labels[-1] == "zumba"
    assert set(LABEL_PRESETS) == {"kinetics400", "embedded-events"}


def test_embedded_events_preset() -> None:
    labels = load_preset("embedded-events")
    assert labels and len(labels) <= MAX_LABELS
    assert {"moving left", "moving right", "growing", "shrinking"} <= set(labels)


def test_unknown_preset() -> None:
    with pytest.raises(InputError, match="'nope'.*kinetics400"):
        load_preset("nope")


@pytest.mark.slow
def test_shipped_embedded_xclip_calls_growing_clips_growing(tmp_path: Path) -> None:
    """The shipped X-CLIP on the first three single-object "growing" clips of the world's test
    split, rendered here, against all 15 event labels (growing is its best class: BENCHMARKS.md)."""
    from demo.presets import PRECOMPUTED
    from demo.world import WorldConfig, clip_event, clip_specs, event_labels, render_to

    specs = [s for s in clip_specs(WorldConfig(), "test")
             if len(s.attributes.objects) == 1 and clip_event(s) == "growing"][:3]
    assert len(specs) == 3
    shipped = XClipClassifier.from_pretrained(PRECOMPUTED / "xclip-world")
    for spec in specs:
        result = shipped.classify(render_to(spec, tmp_path / f"{spec.id}.mp4"), event_labels(), k=3)
        assert result.labels[0] == "growing", (spec.id, result.labels, result.probs)


# ---- concurrency --------------------------------------------------------------------------


class InstantModel:
    """X-CLIP's outputs without its forward, so tokenising is all a call does."""

    logit_scale = torch.tensor(0.0)

    def __call__(self, input_ids: torch.Tensor, **kwargs: torch.Tensor) -> object:
        from types import SimpleNamespace

        return SimpleNamespace(logits_per_video=torch.zeros(1, input_ids.shape[0]))


def test_concurrent_classifications_share_the_tokenizer_safely(
    classifier: XClipClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app answers several classify calls at once from one classifier: each call tokenises
    its prompts twice with different settings, which must not leak into another thread's call."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(classifier, "model", InstantModel())
    frames = torch.zeros(NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    labels = ["a cat playing the piano", "dog", "a very long label about many things " * 4, "x y"]

    def run(_: int) -> str | None:
        try:
            result = classifier.classify_frames(frames, labels, k=4)
        except ValueError as err:
            return str(err)
        return None if len(result.labels) == 4 else f"{len(result.labels)} labels"

    with ThreadPoolExecutor(8) as pool:
        failures = [f for f in pool.map(run, range(1500)) if f is not None]
    assert failures == [], f"{len(failures)} of 1500 calls failed, e.g. {failures[0]}"
