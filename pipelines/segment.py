"""Beam entry point: segment images and videos with DeepLab.

In the style of Beam's own examples: known arguments are ours (`beam_seg.config.RunConfig`),
everything else goes to PipelineOptions, so `--runner DataflowRunner --project … --region …`
needs no code change.

    python -m pipelines.segment INPUT... --output OUT [--model NAME|PATH] [beam options]

The pipeline (`beam_seg.pipeline.transforms.SegmentInputs`):

    uris -> plan units -> Reshuffle -> decode -> RunInference -> write frames + unit files
         -> (group by input) finish inputs: video, error records, done marker
"""

from __future__ import annotations

import sys

from beam_seg.job.launch import run

if __name__ == "__main__":
    sys.exit(run(prog="python -m pipelines.segment"))
