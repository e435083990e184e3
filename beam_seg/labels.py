"""Label sets: class names, ids and colours for the datasets DeepLab models are trained on.

A label set is the contract between a model's output ids and everything downstream
(palette PNGs, overlays, coverage columns, evaluation), so it lives in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

IGNORE_ID = 255

_CITYSCAPES = [
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
]

# Official Cityscapes labelId -> trainId (cityscapesscripts/helpers/labels.py); others are ignored.
CITYSCAPES_ID_TO_TRAINID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

_PASCAL_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


@dataclass(frozen=True)
class LabelSet:
    """Names and colours for class ids 0..n-1; id 255 is always 'ignore' (black)."""

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.colors):
            raise ValueError("a label set needs one colour per name")
        if not 0 < len(self.names) <= IGNORE_ID:
            raise ValueError(f"a label set holds 1..255 classes, got {len(self.names)}")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def palette(self) -> np.ndarray:
        """256x3 uint8 colours indexed by class id; unused ids and 255 are black."""
        palette = np.zeros((256, 3), np.uint8)
        palette[: self.num_classes] = np.asarray(self.colors, np.uint8)
        return palette

    def id_of(self, name: str) -> int:
        return self.names.index(name)

    def column_names(self) -> list[str]:
        """SQL-friendly, unique column suffixes for the classes, in id order."""
        seen: dict[str, int] = {}
        out = []
        for name in self.names:
            base = sql_identifier(name)
            seen[base] = seen.get(base, 0) + 1
            out.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
        return out


def sql_identifier(name: str) -> str:
    """'traffic light' -> 'traffic_light'; ADE20K's 'building, edifice' -> 'building'."""
    first = name.split(",")[0].strip().lower()
    ident = re.sub(r"[^0-9a-z]+", "_", first).strip("_")
    return ident or "class"


def sql_string(text: str) -> str:
    """A SQL string literal of `text` (a path, a class name): quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


def voc_colormap(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC bit-interleaved colour map, also used for ADE20K-style sets."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append((r, g, b))
    return colors


CITYSCAPES = LabelSet(
    "cityscapes", tuple(n for n, _ in _CITYSCAPES), tuple(c for _, c in _CITYSCAPES)
)
PASCAL = LabelSet("pascal", tuple(_PASCAL_NAMES), tuple(voc_colormap(len(_PASCAL_NAMES))))


def parse_label_file(text: str, name: str) -> LabelSet:
    """Read a label file: one name per line (id = line number), or `id<TAB>name` lines.

    Plain lists stop at the first blank line, so a trailing comment block (as in Coral's
    pascal_voc.labels.txt) is not taken for classes. With explicit ids starting at 1
    (ADE20K's objectInfo150 style), id 0 is the model's "other" class.
    """
    lines = [line.rstrip("\r") for line in text.splitlines()]
    numbered = [re.match(r"^\s*(\d+)[\t ]+(.+?)\s*$", line) for line in lines if line.strip()]
    if numbered and all(numbered):
        table = {int(m.group(1)): m.group(2) for m in numbered}
        if 0 not in table:
            table[0] = "other"
        size = max(table) + 1
        names = tuple(table.get(i, f"class_{i}") for i in range(size))
    else:
        names_list = []
        for line in lines:
            if not line.strip():
                if names_list:
                    break
                continue
            names_list.append(line.strip())
        names = tuple(names_list)
    if not names:
        raise ValueError(f"label file {name!r} holds no class names")
    colors = CITYSCAPES.colors if names == CITYSCAPES.names else tuple(voc_colormap(len(names)))
    return LabelSet(name, names, colors)


BUILTIN = {"cityscapes": CITYSCAPES, "pascal": PASCAL}
