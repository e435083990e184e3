"""beam_seg: semantic segmentation of images and driving videos as an Apache Beam job.

The public API, for use inside your own Beam pipeline:

- `SegmentInputs(cfg, handler)`: the whole job as one transform, input URIs in, one summary
  dict per input out, every output written under `cfg.output` (label PNGs, overlays,
  videos, coverage and events tables), resumable like `beam-seg segment`.
- `RunConfig`: that job's options (every `beam-seg segment` flag, same names and defaults).
- `DeepLabModelHandler` and `FrameInput`: a `RunInference` model handler on its own,
  frames in, source-size label maps out (`result.inference.labels`).
- `REGISTRY`, `resolve`, `DEFAULT_MODEL`: the model registry and how a `--model` value
  becomes a local model file and its label set; `load_label_set` for the label set itself.
- `coverage_schema(label_set)` and `EVENT_SCHEMA`: the Arrow schemas of the per-frame
  coverage table and of the events table.

Each is imported on first use, so `import beam_seg` stays cheap (no Beam, no TensorFlow).

Example:
    >>> import beam_seg
    >>> beam_seg.coverage_schema(beam_seg.CITYSCAPES).field("frac_road").type
    DataType(double)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "SegmentInputs": "beam_seg.pipeline.transforms",
    "RunConfig": "beam_seg.config",
    "DeepLabModelHandler": "beam_seg.models.handler",
    "FrameInput": "beam_seg.models.handler",
    "InferenceSettings": "beam_seg.models.scoring",
    "REGISTRY": "beam_seg.models.catalog",
    "DEFAULT_MODEL": "beam_seg.models.catalog",
    "resolve": "beam_seg.models.registry",
    "load_label_set": "beam_seg.models",
    "LabelSet": "beam_seg.labels",
    "CITYSCAPES": "beam_seg.labels",
    "PASCAL": "beam_seg.labels",
    "coverage_schema": "beam_seg.tables.coverage",
    "EVENT_SCHEMA": "beam_seg.tables.events",
}
# where the defining module's name differs from the public one
_RENAMED = {"coverage_schema": "schema_for"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'beam_seg' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
