"""Train the embedded X-CLIP: zero-shot video classification on the rendered world.

The model is an ordinary Hugging Face ``XCLIPModel`` sized like the embedded CLIP and
initialised from the CLIP4Clip checkpoint wherever the two share parts (see
:func:`init_from_clip`): text tower, vision patch/position embeddings and encoder
layers, projections, temperature, and the seqTransf temporal head as X-CLIP's
multi-frame integration transformer (MIT). The new parts (cross-frame message tokens,
the video-specific prompt generator) start random.

Training is X-CLIP's objective: for each clip, logits over the class prompts (the
world's event and relation labels), cross-entropy against the clip's class. The text
tower is frozen by default, so the caption synonyms the CLIP4Clip text tower learned
("sliding to the left" ~ "moving left") survive: :data:`REWORDED` measures that.

Each clip is decoded once to exactly ``num_frames`` uniformly spread frames with
ImageNet mean/std (X-CLIP's preprocessing, :func:`demo.video.decode.load_uniform_clip`) and
kept in memory as float16. Outputs: ``out/best`` (checkpoint + processor files that
:meth:`demo.models.xclip.XClipClassifier.from_pretrained` loads), ``out/log.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo.errors import DemoError, InputError, ModelLoadError
from demo.presets import shown_path
from demo.world import ClipAttributes

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TEMPLATE = "{}"  # class prompt: the bare label, as the classify tab sends it
# Each canonical label worded as the world's captions also say it (demo.world.text), but
# never as the training prompts do: the text tower learned these from CLIP4Clip captions.
REWORDED: dict[str, str] = {
    "moving left": "sliding to the left", "moving right": "sliding to the right",
    "moving up": "rising", "moving down": "sinking",
    "turning clockwise": "rotating clockwise", "turning anticlockwise": "spinning counterclockwise",
    "growing": "getting bigger", "shrinking": "getting smaller", "bouncing": "hopping",
    "appearing": "fading in", "disappearing": "fading out", "staying still": "not moving",
    "approaching": "moving toward each other", "moving apart": "separating", "passing": "crossing paths",
}  # fmt: skip
# The class of a clip played backwards (the world's time-reversal pairs obey it exactly).
REVERSED_CLASS: dict[str, str] = {
    "moving left": "moving right", "moving right": "moving left", "moving up": "moving down",
    "moving down": "moving up", "turning clockwise": "turning anticlockwise",
    "turning anticlockwise": "turning clockwise", "growing": "shrinking", "shrinking": "growing",
    "bouncing": "bouncing", "appearing": "disappearing", "disappearing": "appearing",
    "staying still": "staying still", "approaching": "moving apart", "moving apart": "approaching",
    "passing": "passing",
}  # fmt: skip
BENCH_BEGIN, BENCH_END = "<!-- xclip:embedded -->", "<!-- /xclip:embedded -->"


@dataclass(frozen=True)
class XClipTrainConfig:
    world: str  # world folder with train.jsonl / val.jsonl (demo.world.synth output)
    init: str  # CLIP or CLIP4Clip checkpoint folder to initialise from
    out: str  # run folder: best/, log.jsonl
    num_frames: int = 8
    template: str = TEMPLATE
    # Train each class under the world's other phrasings of it too (a random one per step),
    # never the REWORDED ones, which stay held out for the reworded test.
    synonyms: bool = False
    # Play each training clip backwards with this probability, with the reversed class: free
    # extra data that can only be told apart by frame order (X-CLIP must learn direction).
    reverse: float = 0.5
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3  # new parts: MIT, prompt generator, cross-frame messages, temperature
    vision_lr: float = 1e-4  # copied vision tower (and a copied temporal head), low as in CLIP4Clip
    text_lr: float = 0.0  # 0 freezes the text tower so the learned synonyms survive
    logit_scale: float | None = None  # initial temperature exp(logit_scale); None: the checkpoint's
    weight_decay: float = 0.05
    warmup: float = 0.1  # fraction of the steps spent warming up
    grad_clip: float = 1.0
    prompt_layers: int = 2
    mit_layers: int | None = None  # None: as many as the CLIP4Clip head has (to copy it), else 1
    limit: int | None = None  # first N unambiguous training clips
    val_limit: int | None = None
    seed: int = 0
    workers: int = 2
    save_dtype: str = "float16"  # stored dtype; training and loading run in float32


# --- model: config and initialisation from CLIP ---------------------------------------------

_TEXT_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "max_position_embeddings", "hidden_act", "layer_norm_eps", "attention_dropout",
              "initializer_range", "initializer_factor", "bos_token_id", "eos_token_id", "pad_token_id")
_VISION_KEYS = ("image_size", "patch_size", "num_channels", "hidden_size", "intermediate_size",
                "num_hidden_layers", "num_attention_heads", "hidden_act", "layer_norm_eps",
                "attention_dropout", "initializer_range", "initializer_factor")
# CLIP name -> X-CLIP name (regex, replacement). Everything else in X-CLIP starts random.
_LAYER = (r"encoder\.layers\.(\d+)\.((?:self_attn\.(?:[qkv]|out)_proj|layer_norm[12]|mlp\.fc[12])"
          r"\.(?:weight|bias))")
_EMB = "vision_model.embeddings"
CLIP_TO_XCLIP: tuple[tuple[str, str], ...] = (
    (r"text_model\.embeddings\.(token|position)_embedding\.weight",
     r"text_model.embeddings.\1_embedding.weight"),
    (rf"text_model\.{_LAYER}", r"text_model.encoder.layers.\1.\2"),
    (r"text_model\.final_layer_norm\.(weight|bias)", r"text_model.final_layer_norm.\1"),
    (r"text_projection\.weight", "text_projection.weight"),
    (r"vision_model\.embeddings\.class_embedding", f"{_EMB}.class_embedding"),
    (r"vision_model\.embeddings\.(patch|position)_embedding\.weight", rf"{_EMB}.\1_embedding.weight"),
    (r"vision_model\.pre_layrnorm\.(weight|bias)", r"vision_model.pre_layernorm.\1"),  # CLIP's spelling
    (rf"vision_model\.{_LAYER}", r"vision_model.encoder.layers.\1.\2"),
    (r"vision_model\.post_layernorm\.(weight|bias)", r"vision_model.post_layernorm.\1"),
    (r"visual_projection\.weight", "visual_projection.weight"),
    (r"logit_scale", "logit_scale"),
)  # fmt: skip
# CLIP4Clip's seqTransf head (torch TransformerEncoder, pre-norm) -> X-CLIP's MIT encoder. The
# packed in_proj (q, k, v) is split in init_from_clip; frame_position -> mit.position_embedding.
_MIT = r"mit.encoder.layers.\1"
HEAD_TO_MIT: tuple[tuple[str, str], ...] = (
    (r"transformer\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", rf"{_MIT}.self_attn.out_proj.\2"),
    (r"transformer\.layers\.(\d+)\.norm([12])\.(weight|bias)", rf"{_MIT}.layer_norm\2.\3"),
    (r"transformer\.layers\.(\d+)\.linear([12])\.(weight|bias)", rf"{_MIT}.mlp.fc\2.\3"),
)  # fmt: skip
# Embeddings re-expressed for ImageNet-normalised input (see fold_normalisation).
FOLDED = (f"{_EMB}.patch_embedding.weight", f"{_EMB}.position_embedding.weight")


def map_name(name: str, table: tuple[tuple[str, str], ...]) -> str | None:
    """The X-CLIP name of checkpoint tensor ``name`` under ``table``, or None when it has none."""
    for pattern, target in table:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, target, name)
    return None


@dataclass(frozen=True)
class InitReport:
    """Which X-CLIP tensors came from the checkpoint and which start random."""

    copied: tuple[str, ...]  # X-CLIP names set from the checkpoint (FOLDED ones transformed)
    random: tuple[str, ...]
    sources: dict[str, str] = field(default_factory=dict)  # X-CLIP name -> checkpoint name


def xclip_config(clip_dir: str | Path, num_frames: int = 8, prompt_layers: int = 2,
                 mit_layers: int | None = None) -> Any:
    """An ``XCLIPConfig`` sized like the CLIP checkpoint in ``clip_dir`` (read, not assumed).

    ``mit_hidden_size`` equals ``projection_dim`` (X-CLIP's MIT runs on projected frame
    embeddings), set in the text and vision sub-configs too. The MIT gets the CLIP4Clip
    head's depth and heads when the folder has a seqTransf head, so the head can be copied.
    """
    from transformers import CLIPConfig, XCLIPConfig

    from demo.models.temporal import Clip4ClipSettings

    try:
        clip: Any = CLIPConfig.from_pretrained(str(clip_dir))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot read a CLIP config in {clip_dir}: {err}") from err
    settings = Clip4ClipSettings.load(clip_dir)
    has_head = settings.pooling == "seqTransf"
    proj = int(clip.projection_dim)
    text = {k: getattr(clip.text_config, k) for k in _TEXT_KEYS if hasattr(clip.text_config, k)}
    vision = {k: getattr(clip.vision_config, k) for k in _VISION_KEYS if hasattr(clip.vision_config, k)}
    heads = settings.head_heads if has_head else int(vision["num_attention_heads"])
    return XCLIPConfig(
        text_config={**text, "projection_dim": proj},
        vision_config={**vision, "projection_dim": proj, "num_frames": num_frames, "mit_hidden_size": proj,
                       "mit_intermediate_size": 4 * proj, "mit_num_attention_heads": heads,
                       "mit_num_hidden_layers": mit_layers or (settings.head_layers if has_head else 1)},
        projection_dim=proj, prompt_layers=prompt_layers, prompt_num_attention_heads=heads,
        prompt_alpha=1e-4,  # as the original X-CLIP: the prompts start as a tiny nudge to the text
        logit_scale_init_value=float(clip.logit_scale_init_value),
    )  # fmt: skip


def fold_normalisation(patch: torch.Tensor, position: torch.Tensor, src_mean: tuple[float, ...],
                       src_std: tuple[float, ...], mean: tuple[float, ...],
                       std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch (D, 3, P, P) and position (N + 1, D) embeddings for inputs normalised with
    ``mean``/``std`` that give exactly the embeddings the originals gave for ``src_*``.

    ``(p - m) / s = (s'/s) * (p - m') / s' + (m' - m) / s``: the scale goes into the
    (bias-free) patch convolution, the constant into the patch positions (not the class token).
    """
    import torch

    scale = torch.tensor(std) / torch.tensor(src_std)
    shift = (torch.tensor(mean) - torch.tensor(src_mean)) / torch.tensor(src_std)
    new_patch = patch * scale.view(1, 3, 1, 1).to(patch.dtype)
    offset = (patch * shift.view(1, 3, 1, 1).to(patch.dtype)).sum(dim=(1, 2, 3))  # (D,)
    new_position = position.clone()
    new_position[1:] += offset
    return new_patch, new_position


def init_from_clip(model: Any, clip_dir: str | Path) -> InitReport:
    """Copy the CLIP (and seqTransf head) weights in ``clip_dir`` into X-CLIP ``model`` in place.

    Names map through :data:`CLIP_TO_XCLIP` and :data:`HEAD_TO_MIT`; the head's packed
    q/k/v projection is split. Vision embeddings are folded from CLIP's to ImageNet's
    mean/std (X-CLIP's preprocessing). Shapes must match; a mismatch is an error.
    """
    import torch
    from safetensors.torch import load_file

    from demo.models.temporal import HEAD_FILE
    from demo.video.decode import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

    folder = Path(clip_dir)
    state = model.state_dict()
    updates: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    for name, tensor in load_file(str(folder / "model.safetensors")).items():
        target = map_name(name, CLIP_TO_XCLIP)
        if target is not None:
            updates[target], sources[target] = tensor, name
    head_path = folder / HEAD_FILE
    if head_path.is_file() and model.config.vision_config.mit_num_hidden_layers > 0:
        layers = model.config.vision_config.mit_num_hidden_layers
        for name, tensor in load_file(str(head_path)).items():
            layer = re.match(r"transformer\.layers\.(\d+)\.", name)
            if layer and int(layer.group(1)) >= layers:
                continue
            if name == "frame_position.weight":
                frames = model.config.vision_config.num_frames
                if tensor.shape[0] >= frames:  # positions of the first num_frames frames
                    updates["mit.position_embedding"] = tensor[:frames].unsqueeze(0)
                    sources["mit.position_embedding"] = name
            elif name.endswith(("in_proj_weight", "in_proj_bias")):
                kind = "weight" if name.endswith("weight") else "bias"
                for part, chunk in zip("qkv", tensor.chunk(3), strict=True):
                    target = f"mit.encoder.layers.{layer.group(1) if layer else 0}.self_attn.{part}_proj"
                    target = f"{target}.{kind}"
                    updates[target], sources[target] = chunk, name
            elif (target := map_name(name, HEAD_TO_MIT)) is not None:
                updates[target], sources[target] = tensor, name
    patch, position = FOLDED
    if patch in updates and position in updates:
        folded = fold_normalisation(updates[patch].float(), updates[position].float(),
                                    CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD)
        updates[patch], updates[position] = folded
    bad = {k: (tuple(v.shape), tuple(state[k].shape)) for k, v in updates.items()
           if k not in state or v.shape != state[k].shape}  # fmt: skip
    if bad:
        raise ModelLoadError(f"cannot initialise X-CLIP from {folder}: shape mismatches {bad}")
    with torch.no_grad():
        for name, tensor in updates.items():
            state[name].copy_(tensor.to(state[name].dtype))
    learnable = [k for k in state if k not in updates and not k.endswith("position_ids")]
    report = InitReport(tuple(sorted(updates)), tuple(learnable), sources)
    log.info("X-CLIP initialised from %s: %d tensors copied (%d of them folded to ImageNet mean/std), "
             "%d left random", folder, len(report.copied), len(FOLDED), len(report.random))
    return report


def build_xclip(init: str | Path, num_frames: int = 8, prompt_layers: int = 2,
                mit_layers: int | None = None, seed: int = 0) -> tuple[Any, InitReport]:
    """A new ``XCLIPModel`` (float32) initialised from the CLIP4Clip folder ``init``."""
    import torch
    from transformers import XCLIPModel

    from demo.models.clip4clip import quiet_transformers

    config = xclip_config(init, num_frames, prompt_layers, mit_layers)
    torch.manual_seed(seed)
    with quiet_transformers():
        model = XCLIPModel(config)
    # HF initialises the MIT frame positions with std 1, which swamps small frame
    # embeddings; X-CLIP uses 0.02. Overwritten below when a head is copied.
    torch.nn.init.normal_(model.mit.position_embedding, std=0.02)
    return model, init_from_clip(model, init)


# --- data ----------------------------------------------------------------------------------


def clip_label(attributes: ClipAttributes) -> str | None:
    """The clip's class, as :func:`demo.world.clip_event`, or None when it is ambiguous.

    Ambiguous: several independent objects doing different things (the label would name
    only the first). Relations are never ambiguous; objects doing the same event neither.
    """
    if attributes.relation:
        return str(attributes.relation)
    events = {str(o.event) for o in attributes.objects}
    return events.pop() if len(events) == 1 else None


@dataclass(frozen=True)
class LabelledClip:
    id: str
    path: Path
    label: str


def read_labelled(jsonl: str | Path, limit: int | None = None) -> tuple[list[LabelledClip], int]:
    """Unambiguous clips of a world ``<split>.jsonl`` (first ``limit``) and how many were excluded."""
    path = Path(jsonl)
    if not path.is_file():
        raise InputError(f"world split {path} does not exist (render it with `python -m demo synth`)")
    clips, excluded = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        label = clip_label(ClipAttributes.from_dict(row["attributes"]))
        if label is None:
            excluded += 1
            continue
        clips.append(LabelledClip(row["id"], (path.parent / row["path"]).resolve(), label))
        if limit and len(clips) >= limit:
            break
    return clips, excluded


def load_frames(paths: list[Path], num_frames: int, image_size: int, mean: tuple[float, ...],
                std: tuple[float, ...], workers: int = 2, progress: bool = True,
                desc: str = "decoding clips") -> tuple[torch.Tensor, list[int]]:
    """Decode each clip once -> ((N', T, 3, S, S) float16, indices of the N' decoded clips).

    Undecodable clips are logged and left out.
    """
    import torch
    from tqdm.auto import tqdm

    from demo.video.decode import load_uniform_clip

    def load(path: Path) -> torch.Tensor | str:
        try:
            return load_uniform_clip(path, num_frames, image_size, mean, std)[0].to(torch.float16)
        except DemoError as err:
            return str(err)

    frames, kept = [], []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = tqdm(pool.map(load, paths), total=len(paths), desc=desc, disable=not progress, unit="clip")
        for i, result in enumerate(results):
            if isinstance(result, str):
                log.warning("skipping %s", result)
                continue
            frames.append(result)
            kept.append(i)
    if not frames:
        raise InputError(f"none of the {len(paths)} clips could be decoded")
    return torch.stack(frames), kept


# --- training ------------------------------------------------------------------------------


def training_phrasings(classes: list[str]) -> list[list[str]]:
    """Per class: its canonical name and the world's other participle phrasings of it, minus
    the :data:`REWORDED` one (and so never a test wording)."""
    from demo.world.text import EVENT_PHRASES, RELATION_PHRASES

    phrases = {**EVENT_PHRASES, **RELATION_PHRASES}
    return [[c] + [p for p, _ in phrases[c] if p not in (c, REWORDED[c])] for c in classes]


def param_groups(model: Any, report: InitReport, config: XClipTrainConfig) -> list[dict[str, Any]]:
    """Text tower at ``text_lr`` (frozen at 0; token embeddings always), copied vision weights at
    ``vision_lr``, new parts at ``lr``; no weight decay on gains, biases, embeddings, temperature."""
    copied = set(report.copied)
    groups: dict[tuple[float, bool], list[Any]] = {}
    for name, param in model.named_parameters():
        if name == "text_model.embeddings.token_embedding.weight":
            # Always frozen: only the prompts' few tokens would move, away from their synonyms.
            lr = 0.0
        elif name.startswith(("text_model.", "text_projection.")):
            lr = config.text_lr
        elif name in copied and name != "logit_scale":
            lr = config.vision_lr
        else:
            lr = config.lr
        if lr <= 0.0:
            param.requires_grad_(False)
            continue
        no_decay = param.ndim < 2 or "embedding" in name or name in ("logit_scale", "prompts_generator.alpha")
        groups.setdefault((lr, no_decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": 0.0 if no_decay else config.weight_decay}
            for (lr, no_decay), params in groups.items()]  # fmt: skip


def predict(model: Any, text: dict[str, torch.Tensor], frames: torch.Tensor, batch_size: int = 32) -> Any:
    """Class index per clip: frames (N, T, 3, S, S) against the tokenised prompts -> (N,) int64.

    Videos are batched; X-CLIP still conditions every prompt on its own video.
    """
    import torch

    preds = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            out = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                        pixel_values=frames[start:start + batch_size].float())
            preds.append(out.logits_per_video.argmax(dim=-1))
    return torch.cat(preds)


def save_xclip(model: Any, tokenizer: Any, folder: str | Path, dtype: str = "float16") -> Path:
    """Write the model (weights cast to ``dtype``; config says float32), tokenizer and an
    ``XCLIPProcessor`` with X-CLIP's preprocessing, atomically (temp folder, then rename)."""
    import torch
    from transformers import VideoMAEImageProcessorPil, XCLIPProcessor

    from demo.models.clip4clip import quiet_transformers
    from demo.video.decode import IMAGENET_MEAN, IMAGENET_STD

    final = Path(folder)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # Cast copies, not the live weights; the config keeps float32 so loading gives float32.
    state = {k: v.detach().to(getattr(torch, dtype)) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}  # fmt: skip
    model.config.dtype = "float32"
    size = int(model.config.vision_config.image_size)
    image_processor = VideoMAEImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))  # fmt: skip
    with quiet_transformers():
        model.save_pretrained(tmp, state_dict=state)
        XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def train_xclip(config: XClipTrainConfig, progress: bool = True) -> Path:
    """Train on the world's train split, validate top-1 each epoch, keep the best; -> out/best."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from demo.models.labels import apply_template
    from demo.train.loop import lr_factor
    from demo.video.decode import IMAGENET_MEAN, IMAGENET_STD
    from demo.world import event_labels

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.jsonl").unlink(missing_ok=True)  # a run starts afresh (no resume: it is short)
    (out / "train_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    model, report = build_xclip(config.init, config.num_frames, config.prompt_layers, config.mit_layers,
                                config.seed)
    if config.logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(config.logit_scale))
    tokenizer = AutoTokenizer.from_pretrained(config.init)
    classes = event_labels()
    max_tokens = model.config.text_config.max_position_embeddings

    def tokenize(labels: list[str]) -> dict[str, torch.Tensor]:
        return dict(tokenizer(apply_template(labels, config.template), padding=True, truncation=True,
                              max_length=max_tokens, return_tensors="pt"))

    text, reworded_text = tokenize(classes), tokenize([REWORDED[c] for c in classes])
    phrasings = training_phrasings(classes) if config.synonyms else [[c] for c in classes]
    reversed_class = torch.tensor([classes.index(REVERSED_CLASS[c]) for c in classes])
    size = int(model.config.vision_config.image_size)
    data = {}
    for split, limit in (("train", config.limit), ("val", config.val_limit)):
        clips, excluded = read_labelled(Path(config.world) / f"{split}.jsonl", limit)
        log.info("%s: %d clips (%d ambiguous ones excluded)", split, len(clips), excluded)
        frames, kept = load_frames([c.path for c in clips], config.num_frames, size, IMAGENET_MEAN,
                                   IMAGENET_STD, config.workers, progress, f"decoding {split}")
        data[split] = frames, torch.tensor([classes.index(clips[i].label) for i in kept])
    (frames, labels), (val_frames, val_labels) = data["train"], data["val"]
    if len(labels) < 2:
        raise InputError(f"training needs at least two unambiguous clips, got {len(labels)}")
    steps = max(1, len(labels) // config.batch_size)  # per epoch; the last partial batch is dropped
    optimizer = torch.optim.AdamW(param_groups(model, report, config))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps * config.epochs, config.warmup))
    trainable = [p for p in model.parameters() if p.requires_grad]
    rng = np.random.default_rng(config.seed)
    best, started = -1.0, time.time()
    for epoch in range(config.epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(labels)))
        losses: list[float] = []
        bar = tqdm(range(steps), desc=f"xclip epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   unit="step")
        for step in bar:
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            prompts = tokenize([p[int(rng.integers(len(p)))] for p in phrasings]) if config.synonyms else text
            pixels, target = frames[idx].float(), labels[idx]
            if config.reverse > 0:
                flip = torch.from_numpy(rng.random(len(idx)) < config.reverse)
                pixels[flip] = pixels[flip].flip(1)  # (B, T, ...): reverse the frame order
                target = torch.where(flip, reversed_class[target], target)
            logits = model(input_ids=prompts["input_ids"], attention_mask=prompts["attention_mask"],
                           pixel_values=pixels).logits_per_video  # (B, classes)
            loss = torch.nn.functional.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", temp=f"{float(model.logit_scale.detach().exp()):.1f}")
        model.eval()
        accuracy = 100.0 * float((predict(model, text, val_frames) == val_labels).float().mean())
        reworded = 100.0 * float((predict(model, reworded_text, val_frames) == val_labels).float().mean())
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "first_loss": losses[0],
                  "val_top1": accuracy, "val_top1_reworded": reworded,  # for the record, not for selection
                  "seconds": round(time.time() - started, 1)}
        with (out / "log.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("epoch %d: loss %.3f, val top-1 %.1f%% (reworded %.1f%%)", epoch + 1, record["loss"],
                 accuracy, reworded)
        if accuracy > best:
            best = accuracy
            save_xclip(model, tokenizer, out / "best", config.save_dtype)
    return out / "best"


# --- evaluation and reports ---------------------------------------------------------------


def evaluate_xclip(model_dir: str | Path, world_dir: str | Path, split: str = "test", reworded: bool = False,
                   template: str = TEMPLATE, latency_runs: int = 10, limit: int | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Top-1 accuracy of the X-CLIP in ``model_dir`` on the unambiguous clips of a world split.

    The labels are :func:`demo.world.event_labels`, or with ``reworded`` their
    :data:`REWORDED` phrasings (predictions map back to the canonical class). Latency is
    the median of ``latency_runs`` :meth:`XClipClassifier.classify` calls on one clip
    (decoding included). Returns a JSON-ready dict.
    """
    import numpy as np
    import torch

    from demo.models.labels import apply_template
    from demo.models.xclip import XClipClassifier
    from demo.world import event_labels

    classes = event_labels()
    labels = [REWORDED[c] for c in classes] if reworded else classes
    classifier = XClipClassifier.from_pretrained(model_dir)
    clips, excluded = read_labelled(Path(world_dir) / f"{split}.jsonl", limit)
    frames, kept = load_frames([c.path for c in clips], classifier.num_frames, classifier.image_size,
                               classifier.mean, classifier.std, progress=progress, desc=f"decoding {split}")
    truth = torch.tensor([classes.index(clips[i].label) for i in kept])
    text = classifier.tokenizer(apply_template(labels, template), padding=True, truncation=True,
                                max_length=classifier.max_text_tokens, return_tensors="pt")
    pred = predict(classifier.model, dict(text), frames)
    per_class = {c: round(100.0 * float((pred[truth == i] == i).float().mean()), 1)
                 for i, c in enumerate(classes) if (truth == i).any()}  # fmt: skip
    times = []
    for run in range(latency_runs + 1 if latency_runs > 0 else 0):  # the first call is a warm-up
        start = time.perf_counter()
        classifier.classify(clips[kept[0]].path, labels, template=template)
        if run:
            times.append(time.perf_counter() - start)
    return {"model": str(model_dir), "split": split, "labels": "reworded" if reworded else "canonical",
            "template": template, "clips": len(kept), "excluded_ambiguous": excluded,
            "top1": round(100.0 * float((pred == truth).float().mean()), 1), "per_class": per_class,
            "latency_ms": round(1000.0 * float(np.median(times)), 1) if times else None,
            "latency_runs": latency_runs, "threads": torch.get_num_threads()}  # fmt: skip


def results_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`evaluate_xclip` results."""
    rows = ["| labels | split | clips | top-1 (%) | latency per clip (ms, median) |", "|---|---|---|---|---|"]
    rows += [f"| {r['labels']} | {r['split']} | {r['clips']} | {r['top1']:.1f} | {r['latency_ms']} |"
             for r in results]  # fmt: skip
    return "\n".join(rows)


def write_benchmarks(results: list[dict[str, Any]], command: str, path: str | Path) -> Path:
    """Put the results between the ``xclip:embedded`` markers of ``path`` (other text untouched)."""
    import datetime
    import os
    import platform

    path = Path(path)
    threads = results[0]["threads"] if results else "?"
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores, {threads} torch threads"
    block = "\n".join([
        BENCH_BEGIN,
        f"Top-1 over the {len(REWORDED)} event/relation labels (`demo.world.event_labels()`) on the "
        "test clips whose label is not ambiguous (clips with several objects doing different things "
        "are left out); `reworded` asks with other phrasings of the same classes, never used as "
        "training prompts (`demo.train.xclip.REWORDED`). Latency: one `XClipClassifier.classify` "
        f"call (decode 8 frames + the full forward with {len(REWORDED)} labels), median.", "",
        results_table(results), "",
        f"Command: `{command}`; {machine}; {datetime.date.today().isoformat()}.", BENCH_END,
    ])  # fmt: skip
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(BENCH_BEGIN) + r".*?" + re.escape(BENCH_END), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def write_model_card(folder: str | Path, config: XClipTrainConfig, results: list[dict[str, Any]],
                     command: str) -> Path:
    """``README.md`` for the shipped checkpoint: what it is, how it was trained, its accuracy."""
    from transformers import XCLIPConfig

    folder = Path(folder)
    c: Any = XCLIPConfig.from_pretrained(str(folder))
    t, v = c.text_config, c.vision_config
    train_log = Path(config.out) / "log.jsonl"
    epochs = [json.loads(line) for line in train_log.read_text().splitlines()] if train_log.is_file() else []
    history = "\n".join(f"| {e['epoch']} | {e['loss']:.3f} | {e['val_top1']:.1f} | "
                        f"{e.get('val_top1_reworded', float('nan')):.1f} | {e['seconds']:.0f} |"
                        for e in epochs)  # fmt: skip
    prompts = ("the canonical label or, at random each step, one of the world's other phrasings of the "
               "class (never the reworded test phrasing)" if config.synonyms else "the canonical label")
    card = f"""---
library_name: transformers
pipeline_tag: video-classification
tags: [x-clip, video-classification, synthetic]
---

# xclip-world: a small X-CLIP trained on the embedded procedural world

A Hugging Face `XCLIPModel` (`XCLIPModel.from_pretrained` / `XCLIPProcessor.from_pretrained`,
or `demo.models.xclip.XClipClassifier.from_pretrained`) trained by this project from its own
CLIP4Clip model, for zero-shot classification of clips of the rendered world (`demo/world.py`).
Weights are stored in float16; they load as float32.

## Model

- text tower: {t.num_hidden_layers} layers, hidden {t.hidden_size}, {t.max_position_embeddings} positions,
  CLIP's 49,408-token vocabulary; vision tower: {v.image_size}x{v.image_size} frames, patch {v.patch_size},
  {v.num_hidden_layers} layers, hidden {v.hidden_size}, with X-CLIP's cross-frame message tokens;
  projection {c.projection_dim}
- {v.num_frames} frames per clip, spread uniformly over the clip, ImageNet mean/std
- multi-frame integration transformer: {v.mit_num_hidden_layers} layer(s); video-specific prompt
  generator: {c.prompt_layers} layer(s)
- initialised from `{shown_path(config.init)}`: text tower, vision embeddings and layers, projections and
  temperature copied by an explicit name map (`demo.train.xclip.CLIP_TO_XCLIP`), the vision
  embeddings folded from CLIP's to ImageNet's mean/std, and the CLIP4Clip seqTransf temporal
  head copied into the MIT (`HEAD_TO_MIT`); message tokens and prompt generator start random

## Training

X-CLIP's objective: for each training clip, logits over the {len(REWORDED)} class prompts
(`demo.world.event_labels()`; per class {prompts}; template `{config.template!r}`), cross-entropy
against the clip's class (`demo.world.clip_event`). Clips with several objects doing different
things have no single class and are left out. {"The text tower is frozen, so the caption synonyms the "
"CLIP4Clip text tower learned survive." if config.text_lr <= 0 else f"The text tower trains at lr "
f"{config.text_lr:g} (left frozen, its label embeddings stay too close to tell apart); its token embeddings stay "
"frozen, so words keep what the CLIP4Clip text tower learned."}
Data: the world's train split (seed {config.seed}{f", first {config.limit} usable clips" if config.limit
else ""}), validated each epoch on val, best epoch kept. {config.epochs} epochs, batch {config.batch_size},
AdamW, lr {config.lr:g} (new parts) / {config.vision_lr:g} (copied vision weights), warm-up then cosine.

| epoch | train loss | val top-1 (%) | val top-1, reworded labels (%) | seconds since training began |
|---|---|---|---|---|
{history}

Reproduce: `{command}` (after `python -m demo train --preset embedded`).

## Test accuracy

{results_table(results)}

Reworded labels: {", ".join(f"{k} -> {v}" for k, v in REWORDED.items())}.

## Limits

Knows only the rendered world: eight shapes in eight colours, their motions, and the world's
plain, gradient and textured backgrounds.
It is not a general video classifier; use `microsoft/xclip-base-patch32` for real video.
"""
    path = folder / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m demo.train.xclip MODEL_DIR WORLD_DIR``: re-evaluate and update BENCHMARKS.md."""
    import argparse

    from demo.presets import ROOT

    p = argparse.ArgumentParser(prog="python -m demo.train.xclip", description=main.__doc__)
    p.add_argument("model_dir")
    p.add_argument("world_dir")
    p.add_argument("--split", default="test")
    p.add_argument("--benchmarks", default=str(ROOT / "BENCHMARKS.md"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = [evaluate_xclip(args.model_dir, args.world_dir, args.split, reworded=r) for r in (False, True)]
    print(results_table(results))
    command = f"python -m demo.train.xclip {args.model_dir} {args.world_dir} --split {args.split}"
    write_benchmarks(results, command, args.benchmarks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
