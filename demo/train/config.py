"""A training stage's settings: :class:`TrainConfig`, loaded once at the entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from demo.errors import InputError


@dataclass(frozen=True)
class TrainConfig:
    """One training stage: data, model, schedule and the objectives' weights (see :mod:`demo.train`)."""

    train: str  # CSV with path,caption or a world <split>.jsonl
    out: str
    val: str | None = None  # same formats; default: hold out 5% of train
    init: str | None = None  # HF CLIP/CLIP4Clip folder or id to start from
    model_config: str | None = None  # JSON {"text": {...}, "vision": {...}} for random init
    stage: str = "video"  # "frames" (vision tower, probes only), "image" (frames + still captions) or "video"
    # What the video stage trains: meanP, one head (seqTransf, tdb, tdb+tab), "both" (meanP and seqTransf) or a
    # comma list of these, e.g. "meanP,seqTransf,tdb,tdb+tab": every listed pooling on one backbone, the loss
    # the mean of theirs, all heads saved in the checkpoint, whose own pooling is the first head listed.
    pooling: str = "seqTransf"
    epochs: int = 5
    schedule_epochs: int | None = None  # length of the LR schedule (default: epochs); run part of a longer one
    batch_size: int = 64
    accum_steps: int = 1  # micro-batches per optimiser step
    lr: float = 1e-3  # new parameters: temporal head, temperature
    clip_lr: float = 1e-4  # CLIP towers (lower, as CLIP4Clip does); = lr when training from scratch
    weight_decay: float = 0.05
    warmup: float = 0.1  # fraction of all steps spent warming up linearly
    grad_clip: float = 1.0
    # World clips (video stage): share of clips that also get a hard negative caption, their
    # caption with one event changed (see demo.world.counterfactual and multi_positive_infonce).
    hard_negatives: float = 0.0
    # World clips (video stage): share of clips that also get a caption with one object's colour or size
    # changed (demo.world.look_changed) as a hard negative: what binds the look to the object once the event
    # centres have taught the towers to rank by event (docs/experiments.md, colour and size).
    look_negatives: float = 0.0
    # World clips (image stage): share of frames captioned with where each object is in that very
    # frame (with the mirrored caption as a hard negative); the rest get still-frame captions.
    frame_captions: float = 0.0
    # World clips (video stage): weight of the image stage's frame-caption loss on one frame per
    # clip, which keeps object positions in the frame embeddings.
    frame_loss: float = 0.0
    # World clips: share of batches drawn from clips of one colour (see demo.train.data.epoch_order).
    grouped_batches: float = 0.0
    # World clips (video stage, seqTransf head): share of the captions whose meaning changes when
    # their clip plays backwards ("moving left", "growing") that also score the clip's own frames in
    # reverse order, as a negative video of their own. Only frame order tells the two apart, so this is the
    # one signal that makes the head (and the frame features under it) read time; in-batch negatives
    # almost never hold a clip's reversal. Time-reversed videos as negatives follow Bagad et al.,
    # "Test of Time" (CVPR 2023).
    reversed_videos: float = 0.0
    # World clips (both stages): weight of a regression from every frame embedding the loss sees
    # onto what the frame shows (demo.world.frame_layout: a coarse coverage map, and a lone
    # object's position, size, opacity and angle), through a linear probe that is trained with
    # the model and then dropped. Captions name positions only coarsely and batches rarely need
    # them, so without it the frame embeddings lose where things are, and with it the order of
    # frames is all a temporal head needs to read direction (docs/decisions/frame-probes.md).
    layout_loss: float = 0.0
    # Within the layout loss, the weight of a lone object's angle code (cos, sin of symmetry order x angle)
    # against the other values' 1 (docs/experiments.md, the turning directions).
    angle_weight: float = 1.0
    # World clips (all stages): weight of a cross-entropy from every frame embedding the loss sees
    # onto which shapes the frame shows (demo.world.frame_shapes), through a linear classifier trained
    # with the model and then dropped. Captions alone leave shape out of the frames: in a random batch
    # colour, size and event tell clips apart, and "a red circle" / "a red square" embed at cosine
    # 0.998, so shape-changed negatives have no gradient to start from (docs/decisions/frame-probes.md).
    shape_loss: float = 0.0
    # World clips (video stage): weight of the event centres (demo.train.events): captions, their event-changed
    # hard negatives and each head's clips (forwards and backwards) classified by the events they show against
    # one learned centre per event, shared by both towers. Without it the text tower embedded "moving up",
    # "moving down", "bouncing" and "staying still" at cosine 0.985-0.990 (docs/experiments.md).
    event_loss: float = 0.0
    # Video stage: the same classifier for how objects look, one set of centres per look named in ``looks``
    # (colour, shape, size; demo.train.looks): colour had fallen to 61-65% of the free-form top 5 once the
    # event centres made both towers rank by event.
    look_loss: float = 0.0
    looks: str = "colour,shape"
    sample_fps: float | None = None  # None: keep the initial checkpoint's setting
    max_frames: int | None = None
    max_words: int = 32  # CLIP4Clip trains with 32 tokens
    head_layers: int = 4
    seed: int = 0
    device: str | None = None
    amp: bool = True  # mixed precision, used only on CUDA
    workers: int = 2
    limit: int | None = None  # use only the first N training clips (smoke tests)
    resume: bool = False
    save_dtype: str = "float16"  # weights are stored in this dtype; training runs in fp32
    # torch.compile the text and vision towers (weights and checkpoints unchanged). On the 2-core CPU
    # a video-stage step ran about 25% faster and an image-stage step about 13% after a one-off compile
    # of under a minute (docs/decisions/compile-every-stage.md); the embedded recipe compiles every stage.
    compile: bool = False

    @property
    def poolings(self) -> list[str]:
        """The trained poolings in order (``both`` is meanP and seqTransf)."""
        text = "meanP,seqTransf" if self.pooling == "both" else self.pooling
        return list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))

    @property
    def heads(self) -> list[str]:
        """The trained temporal heads (video stage only; the first is the checkpoint's own pooling)."""
        return [p for p in self.poolings if p != "meanP"] if self.stage == "video" else []

    @property
    def look_names(self) -> tuple[str, ...]:
        """The looks given centres (``looks``, comma-separated) in order."""
        return tuple(x for x in self.looks.split(",") if x)

    def __post_init__(self) -> None:
        if self.stage not in ("frames", "image", "video"):
            raise InputError(f"stage must be 'frames', 'image' or 'video', got {self.stage!r}")
        if self.stage == "frames" and self.shape_loss <= 0 and self.layout_loss <= 0:
            raise InputError("stage 'frames' trains on the frame probes alone: give shape_loss or layout_loss > 0")
        unknown = [x for x in self.look_names if x not in ("colour", "shape", "size")]
        if unknown:
            raise InputError(f"looks are colour, shape and size (comma-separated), got {', '.join(unknown)}")
        from demo.models.temporal import POOLINGS  # here: it loads torch, and the CLI reads this module at start

        bad = [p for p in self.poolings if p not in POOLINGS]
        if bad or not self.poolings:
            raise InputError(f"pooling must be 'both' or a comma list of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if (self.init is None) == (self.model_config is None):
            raise InputError("give exactly one of init (a checkpoint) or model_config (random init)")
