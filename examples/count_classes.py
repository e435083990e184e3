"""Someone else's Beam pipeline that uses beam_seg as a library: which class covers most of
each photo? It reads image paths, decodes them itself, segments them with beam_seg's model
handler inside its own RunInference, and writes its own CSV (image, top class, its share).

    python examples/count_classes.py '../shared/data/images/dashcam/*.jpg' --to shares.csv
    python examples/count_classes.py 'photos/*.png' --to shares.csv --model pascal-mnv2-quant

Nothing of beam-seg's own output layout is written: only the handler is borrowed.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from PIL import Image

import beam_seg


def read_rgb(path: str) -> beam_seg.FrameInput:
    """Our own decoding: any picture Pillow reads, as an RGB frame of kind 'image'."""
    with Image.open(path) as image:
        return beam_seg.FrameInput("image", np.asarray(image.convert("RGB")))


def top_class(path: str, labels: np.ndarray, names: tuple[str, ...]) -> dict:
    """The class with the most pixels in one label map, and its share of the picture."""
    counts = np.bincount(labels.ravel(), minlength=len(names))[: len(names)]
    best = int(counts.argmax())
    return {"image": path, "top_class": names[best], "share": round(counts[best] / labels.size, 4)}


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["image", "top_class", "share"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r["image"]))
    return buf.getvalue()


def build(pipeline: beam.Pipeline, paths: list[str], handler: beam_seg.DeepLabModelHandler,
          names: tuple[str, ...], to: str) -> None:
    """paths -> (path, frame) -> RunInference(keyed beam_seg handler) -> one CSV at `to`."""
    _ = (pipeline
         | "Paths" >> beam.Create(paths)
         | "Decode" >> beam.Map(lambda path: (path, read_rgb(path)))
         | "Segment" >> RunInference(KeyedModelHandler(handler))
         | "TopClass" >> beam.MapTuple(lambda path, result: top_class(path, result.inference.labels, names))
         | "OneList" >> beam.combiners.ToList()
         | "Write" >> beam.Map(write_text, to))


def write_text(rows: list[dict], to: str) -> None:
    with open(to, "w", encoding="utf-8") as f:
        f.write(to_csv(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", help="a glob of image files")
    parser.add_argument("--to", required=True, help="the CSV to write")
    parser.add_argument("--model", default=beam_seg.DEFAULT_MODEL,
                        help="a beam_seg registry name or a model file")
    parser.add_argument("--labels", help="the label set of a model outside the registry")
    args = parser.parse_args(argv)
    names = beam_seg.load_label_set(beam_seg.resolve(args.model, args.labels).labels).names
    handler = beam_seg.DeepLabModelHandler(args.model, args.labels)
    with beam.Pipeline() as pipeline:
        build(pipeline, sorted(glob.glob(args.pattern)), handler, names, args.to)


if __name__ == "__main__":
    main()
