"""Model registry, download cache and loaders behind one `Model.predict` interface."""

from __future__ import annotations

from beam_seg import labels as label_sets
from beam_seg import storage
from beam_seg.models.catalog import DEFAULT_MODEL, REGISTRY
from beam_seg.models.interface import InputSpec, Model
from beam_seg.models.loaders import load_model
from beam_seg.models.registry import ModelNotFoundError, ResolvedModel, resolve

__all__ = [
    "DEFAULT_MODEL", "REGISTRY", "InputSpec", "Model", "ModelNotFoundError", "ResolvedModel",
    "load_label_set", "load_model", "resolve",
]


def load_label_set(value: str | None) -> label_sets.LabelSet:
    """`cityscapes`, `pascal`, `ade20k` or a label file path/URI -> LabelSet."""
    if value is None:
        raise ModelNotFoundError(
            "this model is not in the registry: say its label set with "
            "--labels cityscapes|pascal|ade20k|FILE")
    if value in label_sets.BUILTIN:
        return label_sets.BUILTIN[value]
    if value == "ade20k":
        value = resolve("ade20k-mnv2").labels
    if not storage.exists(value):
        raise ModelNotFoundError(
            f"label set {value!r} is neither cityscapes, pascal, ade20k nor a readable file")
    name = value.rsplit("/", 1)[-1].split(".")[0]
    try:
        return label_sets.parse_label_file(storage.read_bytes(value).decode("utf-8"), name)
    except UnicodeDecodeError as exc:  # an image or a model given as --labels: one line, not a traceback
        raise ModelNotFoundError(f"label file {value!r} is not UTF-8 text ({exc.reason} at byte "
                                 f"{exc.start}): give one class name a line") from None
    except ValueError as exc:
        raise ModelNotFoundError(str(exc)) from None
