"""Which torch device to run on: the caller's choice, checked, or CUDA when present."""

from __future__ import annotations

from demo.errors import InputError


def default_device() -> str:
    import torch  # lazy: the CLI's --help and argument errors need no torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """``device`` if this machine has it (``cpu``, ``cuda``, ``cuda:N``), else one clear
    InputError; None picks :func:`default_device`."""
    import torch

    if device is None or device == "":
        return default_device()
    name = device.strip().lower()
    if name == "cpu":
        return "cpu"
    kind, _, number = name.partition(":")
    if kind != "cuda" or (number and not number.isdigit()):
        raise InputError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but torch sees no CUDA GPU here (this torch build: "
                         f"{torch.__version__}); use --device cpu")
    if number and int(number) >= torch.cuda.device_count():
        raise InputError(f"device {device!r} asked for, but there are {torch.cuda.device_count()} CUDA GPU(s)")
    return name
