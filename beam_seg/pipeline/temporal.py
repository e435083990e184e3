"""Temporal fusion in the write step: each video frame's probabilities combined with those of
up to K frames before and after it (a weighted geometric mean, GEOMETRIC_FLOOR), warped onto
it by optical flow on a grid twice as fine as its own, with weights that fall off with
distance (a Gaussian of 1.1 frames), never across a scene cut, and never over a thin object
the frame itself sees (PROTECTED_CLASSES). Its labels then lean on the previous frame's where
two classes are nearly tied (HYSTERESIS). With --keyframes, frames scored by one pass take
their detail from the key frames around them (`neighbour_weight`). docs/quality.md has the
measurements.

A batch job sees the future, so it smooths both ways: on the clips of `make bench-quality`
fused scores cut the flow-compensated flicker to 0.39-0.72x of the frames' alone, and with
the leaning labels and neighbours warped as log-probabilities to 0.29-0.55x (`balanced`,
K=1). A work unit decodes `frames_before(K)` frames before its range and K after
(`decode.context_span`), and every quantity here depends only on a bounded run of frames
around it, so the label maps are the same bytes whatever --segment-frames is.
Scores are held at their grid resolution (twice for a frame that serves as a neighbour: as
log-probabilities too), frames only until they are written: memory is bounded by 2K+2
frames per unit, and the previous frame's HYSTERESIS_DEPTH label maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from beam_seg.media import flow
from beam_seg.media.pixels import resize_nearest
from beam_seg.models.scoring import Segmentation
from beam_seg.pipeline.records import FrameKey
from beam_seg.scores import ScoreGrid, confidence, refined_log, softmax, sticky_labels


@dataclass
class _Frame:
    key: FrameKey
    rgb: np.ndarray | None  # None for context frames, which are never written
    seg: Segmentation
    grey: np.ndarray
    size: tuple[int, int]  # source (width, height)
    cut_before: bool = False  # a scene cut between the previous decoded frame and this one
    labels: np.ndarray | None = None
    chain: list[np.ndarray] | None = None  # what the next frame leans on (`_labels`)
    full: bool = True  # scored with the preset's full window set: a key frame (see --keyframes)
    log_scores: ScoreGrid | None = None  # seg.scores as log-probabilities, once it is a neighbour

    def neighbour_scores(self) -> ScoreGrid:
        """Its scores as they are warped onto a neighbour: log-probabilities, interpolated as
        the frame's own are (see the comment above FUSION_REFINE)."""
        if self.log_scores is None:
            self.log_scores = refined_log(self.seg.scores, 1)
        return self.log_scores


@dataclass(frozen=True)
class FusedFrame:
    key: FrameKey
    rgb: np.ndarray
    labels: np.ndarray
    confidence: float
    flicker: float | None  # None for a video's first frame and right after a cut


# How fast a neighbour's weight falls off with its distance d in frames: exp(-d²/2σ²), so
# 1 : 0.66 : 0.20 at d = 0, 1, 2 whatever K is (K only bounds the window). On the Cityscapes
# clips this took K=1's flow-compensated flicker from 0.64x to 0.59x (2048x1024) and from
# 0.48x to 0.44x (512x256) of K=0's against the triangle K+1-|d| (1/4, 1/2, 1/4), and K=2
# lost less of the annotated frames' mIoU (-0.025 instead of -0.033 at 2048x1024).
WEIGHT_SIGMA_FRAMES = 1.1
# ... times this between key frames (every frame is one without --keyframes): 1 : 1.06 : 0.31.
# With thin objects protected (PROTECTED_CLASSES) and the geometric mean (GEOMETRIC_FLOOR),
# neighbours can weigh more: at 1.6 `balanced` K=1's flicker over the clip sets of
# `make bench-quality` fell from 0.584x to 0.575x of K=0's, its worst set -0.0002 mIoU
# (with the arithmetic mean 1.3 was the most it took: 1.5 lost 0.0019).
NEIGHBOUR_GAIN = 1.6


# A neighbour's scores are warped onto the frame as log-probabilities, bilinear, then made
# probabilities again: the interpolation the frame's own scores get (`refined_log`), and the
# model's own resize of its logits. Warped as probabilities, bilinear, they came out flatter
# between grid points than the frame's own, and a frame's own scores warped onto itself
# with zero flow lost 0.023-0.030 mIoU (the annotated frames of clip-seq0000@1024 and its 16:9
# crop, `balanced`); each neighbour's warped scores alone scored 0.01-0.03 higher as
# log-probabilities. With fusion (`make bench-quality`, 2026-12-05 night), `balanced` K=1:
# the 16:9 crop 0.570 -> 0.581 (`--temporal 0`: 0.595), clip-seq0000@1024 0.626 -> 0.630,
# seq0000 0.634 -> 0.637, synthetic-aachen +0.002, -kitti +0.001, -bdd100k 0.000, seq0001
# 0.497 -> 0.494 (`--temporal 0`: 0.462); the default's key frames: the crop +0.006,
# synthetic-bdd100k -0.002; flicker lower on every clip set. docs/quality-log.md.
# (`_Frame.neighbour_scores`)


# Fusion runs on a grid this many times finer than the frame's score grid. On the coarse grid
# itself (one point per 16 model-input pixels, 32 source pixels at `balanced` on 2048x1024) a
# neighbour's scores were interpolated twice, once when warped onto this frame's grid points
# and again when labels were made from the fused grid: a pole or a rider that peaks at one
# grid point of the neighbour and lands between two points here was smeared over both and
# lost to its surroundings (pole IoU 0.33 -> 0.17 on the annotated seq0000 frame with K=1).
# Sampled at twice the density, the warped neighbour keeps its own interpolation.
FUSION_REFINE = 2
# ... and finer than the finest grid among the frame and the neighbours it hears. A frame
# between key frames (--keyframes) has one whole-frame pass: at `balanced` on 16:9 its grid is
# 33x33 (a point every 28 source pixels across a 912-wide frame), its key frames' 33x77 (every
# 12). Fused on its own grid, twice as fine, the key frames' detail was sampled every 14
# pixels across; on theirs, every 6. The default (N=4), pooled over the key frames' phases,
# against `balanced --temporal 0`: clip-seq0000@1024 (`--keyframes 4`) -0.045 -> -0.040, its
# 16:9 crop -0.040 -> -0.034, synthetic-bdd100k +0.001 -> +0.003, -kitti -0.000 -> +0.000,
# -aachen -0.009 -> -0.004, with less flicker on each. Frames scored alike (every frame
# without --keyframes) have one grid, and fuse as before.


# With --keyframes N, a frame scored by one whole-frame pass takes the key frames around it
# (up to N-1 away) at this many times the frame's own weight, falling off as a Gaussian of
# KEY_SIGMA_FRAMES: the key frames' detail carried onto it by flow. Frames scored by one pass
# are nobody's neighbour: a key frame keeps its own scores, and a frame between key frames
# takes only them. On the synthetic dashcam clips (balanced, N=3) that gave 0.267 mIoU
# against 0.254 when those frames counted as neighbours too (0.271 with --temporal 0).
KEY_WEIGHT = 6.0
KEY_SIGMA_FRAMES = 2.0
# ... and only where their warp matches it closely: exp(-residual / KEY_MATCH_SIGMA), where
# frames scored alike use flow.MATCH_SIGMA (25). A key frame two or three frames away is
# warped by a longer flow, and the frame's own pass is a fair fallback where that flow fails.
# The default (N=4, K=3) against `balanced --temporal 0`, pooled over the key frames' phases,
# at 50 / 25 / 12 / 6 / 3: clip-seq0000@1024 (`--keyframes 4`) -0.046 / -0.040 / -0.027 /
# -0.013 / -0.008; its 16:9 crop -0.038 / -0.034 / -0.032 / -0.034 / -0.034;
# synthetic-bdd100k +0.003 / +0.003 / +0.003 / +0.002 / +0.001; -kitti +0.000 / +0.000 /
# -0.000 / -0.002 / -0.006; -aachen -0.004 at each. 12 gains on the real clips and costs the
# users' kind of footage nothing measurable; tighter costs it.
KEY_MATCH_SIGMA = 12.0


# Between key frames (every frame without --keyframes) the frames' opinions are combined as a
# weighted geometric mean (of probabilities floored at this), renormalised: a class wins where
# every frame finds it likely, not where one frame is sure and another rules it out. Stuff
# boundaries (road/sidewalk/terrain, building/vegetation) then move less from frame to frame.
# Its known fault, that one neighbour that misplaces a thin object vetoes it, no longer
# applies: where the frame sees a thin object its own scores stand (PROTECTED_CLASSES), and
# elsewhere a neighbour cannot paint one the frame does not see. On the clip sets of
# `make bench-quality` against the arithmetic mean (both protected): clip-seq0000@1024
# `balanced` K=1 -0.0014 -> +0.0009 mIoU for flicker 0.739x -> 0.729x, worst set -0.0014 ->
# -0.0002; the floor bounds a veto (0.001: the same for balanced, `high` -0.0006; 0.1: -0.0030).
# Frames between key frames keep the arithmetic mean (their key frames' detail is carried
# over whole), and so do label sets without any of PROTECTED_CLASSES (unprotected, the
# geometric mean lost 0.031 on clip-seq0000@1024). docs/quality-log.md.
GEOMETRIC_FLOOR = 0.01


# Thin and small classes: where a frame's own top class is one of these, its own scores stand
# and its neighbours are not heard. Their fused losses were misplacement, not correction: a
# pole or a sign a few pixels wide lands beside itself when flow moves it with what is behind
# it (a neighbour's warped scores hold the frame's class within one fine grid step of nearly
# every such point, but not at it), and two neighbours outvote the frame even where it is
# sure. On the 1024x512 seq0000 clip that cost 0.013 mIoU at `balanced` K=1 and 0.019 at
# `high` K=2 (pole, sign, rider); protected, +0.0001 and 0.0000, while the rest of the frame
# (most of the flicker) is fused as before. Frames between key frames (--keyframes) are not
# protected: their one pass sees thin objects worse than the key frames around them do
# (protected, the default's synthetic-bdd100k fell from 0.267 to 0.261). docs/quality-log.md.
PROTECTED_CLASSES = ("pole", "traffic light", "traffic sign", "person", "rider", "motorcycle", "bicycle")


# Last, a frame's labels lean towards the previous frame's, warped onto it by flow: at each
# pixel the class the previous frame gave it gets HYSTERESIS more log-probability (x1.5).
# Where two classes are nearly tied, as along most boundaries, the pixel keeps the label it
# had, so a boundary stops stepping back and forth by a pixel or two; where the frame is
# sure, its own scores decide. Leaning on the previous frame's final labels would chain back
# to the start of the video, and a work unit could not know them: so the chain is cut at
# HYSTERESIS_DEPTH frames. A frame's labels at depth 0 are its fused scores' own; at depth d
# they lean on the previous frame's at depth d-1; the frame's written labels are those at
# depth HYSTERESIS_DEPTH (a unit decodes that many frames more before its range,
# `frames_before`). Fused scores alone left `balanced` K=1 at 0.72x of K=0's flicker on the
# 1024x512 Cityscapes clip (thin objects and boundaries move by themselves); leaning at
# depth 1, 2, 3, 6 (bonus 0.3): 0.64x, 0.60x, 0.59x, 0.59x, mIoU +0.002 to +0.004. Bonus 0.2 /
# 0.3 / 0.4 at depth 3: 0.62x / 0.59x / 0.57x. 0.4 lowered flicker on every clip set of
# `make bench-quality` (to 0.29-0.57x) and raised mIoU on all but the 16:9 crop of that clip
# (-0.003 there), the default's key frames most (synthetic-bdd100k -0.002 -> +0.002 against
# `--temporal 0`). docs/quality-log.md, "Labels that lean on the previous frame's".
# A key frame does not lean on a one-pass frame before it (--keyframes): its own windows see
# more than that frame's labels carry. Leaning there cost the key frame itself 0.01-0.024
# mIoU on the real-motion Cityscapes clips; not leaning, the default's mIoU rose on every
# clip set (the mean over the key frames' four phases: +0.001 to +0.011), for flicker
# 0.30x -> 0.35x of `--temporal 0`'s on synthetic-bdd100k and 0.51x -> 0.57x on the crop.
HYSTERESIS = 0.4
HYSTERESIS_DEPTH = 3


def frames_before(k: int) -> int:
    """Context frames a unit decodes before its range: its first frame's labels lean on a
    chain of HYSTERESIS_DEPTH frames before it, the first of which is fused with its own K
    neighbours, and the frame before the first (for flicker) on one more."""
    return k + HYSTERESIS_DEPTH + 1


def protected_ids(names: Sequence[str]) -> tuple[int, ...]:
    """The ids of a label set's PROTECTED_CLASSES (none for label sets without them)."""
    return tuple(i for i, name in enumerate(names) if name in PROTECTED_CLASSES)


def neighbour_weight(d: int, frame_is_key: bool, neighbour_is_key: bool) -> float:
    """The weight of a neighbour d frames away (the frame itself weighs 1)."""
    if not neighbour_is_key:
        return 0.0
    if not frame_is_key:
        return KEY_WEIGHT * math.exp(-d * d / (2 * KEY_SIGMA_FRAMES ** 2))
    return NEIGHBOUR_GAIN * math.exp(-d * d / (2 * WEIGHT_SIGMA_FRAMES ** 2))


def arithmetic_mean(own: np.ndarray, votes: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The frame's probabilities (weight 1) and its neighbours' (warped, each with a weight
    per grid point) averaged."""
    total, weight = own.copy(), np.ones(own.shape[:-1], np.float32)
    for probs, match in votes:
        total += probs * match[..., None]
        weight += match
    return total / weight[..., None]


def geometric_mean(own: np.ndarray, votes: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The weighted geometric mean of the same, each probability floored at GEOMETRIC_FLOOR,
    renormalised to probabilities."""
    floor = np.float32(GEOMETRIC_FLOOR)
    total, weight = np.log(np.maximum(own, floor)), np.ones(own.shape[:-1], np.float32)
    for probs, match in votes:
        total += np.log(np.maximum(probs, floor)) * match[..., None]
        weight += match
    return softmax(total / weight[..., None])


class TemporalFuser:
    """Takes one unit's frames in order (context frames included) and gives back its own
    frames, fused, as soon as their K later neighbours have arrived (the rest at `flush`)."""

    def __init__(self, k: int, protected: Sequence[int] = ()):
        """`protected`: class ids a frame keeps where they are its own top class (`protected_ids`)."""
        self.k = k
        self.protected = np.array(protected, np.int64)
        self.frames: list[_Frame] = []
        self.next = 0  # position in `frames` of the next frame to emit
        self._own_seen = False  # a frame of the unit's own (not context) has been emitted
        self._flows: dict[tuple[int, int], np.ndarray] = {}

    def add(self, key: FrameKey, rgb: np.ndarray, seg: Segmentation,
            keyframe: bool = True) -> list[FusedFrame]:
        """`keyframe`: the frame was scored with the preset's full window set (False: one
        whole-frame pass, see --keyframes)."""
        frame = _Frame(key, None if key.context else rgb, seg, flow.small_grey(rgb),
                       (rgb.shape[1], rgb.shape[0]), full=keyframe)
        self.frames.append(frame)
        t = len(self.frames) - 1
        if t > 0:  # backward flow, as flicker and fusion use it: one flow a pair, not two
            frame.cut_before = flow.is_cut(frame.grey, self.frames[t - 1].grey,
                                           self._flow_between(t, t - 1))
        ready = []
        while self.next + self.k < len(self.frames):
            ready += self._emit(self.next)
        return ready

    def flush(self) -> list[FusedFrame]:
        ready = []
        while self.next < len(self.frames):
            ready += self._emit(self.next)
        return ready

    def _flow_between(self, a: int, b: int) -> np.ndarray:
        if (a, b) not in self._flows:
            self._flows[(a, b)] = flow.dense_flow(self.frames[a].grey, self.frames[b].grey)
        return self._flows[(a, b)]

    def _same_scene(self, a: int, b: int) -> bool:
        lo, hi = min(a, b), max(a, b)
        return not any(self.frames[i].cut_before for i in range(lo + 1, hi + 1))

    def _emit(self, t: int) -> list[FusedFrame]:
        frame = self.frames[t]
        self.next = t + 1
        # context frames before the unit's own are labelled: its first frame leans on a
        # chain of them (HYSTERESIS_DEPTH), and so does the frame before it, for flicker
        wanted = frame.rgb is not None or not self._own_seen
        self._own_seen |= frame.rgb is not None
        out = []
        if wanted:
            width, height = frame.size
            fused, sure = self._fuse(t, width, height)
            frame.chain, frame.labels = self._labels(t, fused)
            if frame.rgb is not None:
                previous = self.frames[t - 1] if t > 0 else None
                shaky = None
                if previous is not None and previous.labels is not None and not frame.cut_before:
                    shaky = flow.flicker(frame.labels, previous.labels, self._flow_between(t, t - 1))
                out.append(FusedFrame(frame.key, frame.rgb, frame.labels, sure, shaky))
        self._forget(t)
        return out

    def _labels(self, t: int, fused: ScoreGrid) -> tuple[list[np.ndarray], np.ndarray]:
        """The frame's label maps at its label raster leaning on 0 .. HYSTERESIS_DEPTH-1
        previous frames (what the next frame leans on), and its labels at source size, which
        lean on HYSTERESIS_DEPTH of them (none at K=0: frames alone, after a cut, or a key
        frame after a one-pass frame)."""
        frame = self.frames[t]
        width, height = frame.size
        out_w, out_h = min(frame.seg.raster[0], width), min(frame.seg.raster[1], height)
        previous = self.frames[t - 1] if t > 0 else None
        priors = []
        if (self.k and previous is not None and previous.chain is not None and not frame.cut_before
                and (previous.full or not frame.full)):  # a key frame leans on no one-pass frame
            priors = flow.warp_labels(previous.chain, self._flow_between(t, t - 1), out_w, out_h)
        maps = sticky_labels(fused, width, height, out_w, out_h, priors, HYSTERESIS)
        maps += [maps[-1]] * (HYSTERESIS_DEPTH + 1 - len(maps))  # no previous frame: its own
        return maps[:HYSTERESIS_DEPTH], resize_nearest(maps[HYSTERESIS_DEPTH], width, height)

    def _fuse(self, t: int, width: int, height: int) -> tuple[ScoreGrid, float]:
        """The frame's probabilities and its neighbours', warped onto it and each weighted per
        grid point by how well its warp matches this frame, combined on a grid FUSION_REFINE
        times finer than the finest of theirs (for a frame between key frames, its key
        frames': see the comment above FUSION_REFINE): a geometric mean between key frames
        (every frame without --keyframes), an arithmetic one for a frame between key frames.
        Returns the fused grid and the frame's confidence.

        The confidence is always the arithmetic mean's: the geometric mean's floor flattens
        what every frame is sure of (0.99 everywhere comes out 0.85 with 19 classes), which
        took the 2048x1024 aachen clip's mean confidence at `balanced` from 0.936 to 0.805
        and would have set off the out-of-domain warning on the model's own training footage.

        Where the frame's own top class is protected (thin objects, see PROTECTED_CLASSES)
        its own scores stand. That is what lets the geometric mean in: unprotected, one
        neighbour that misplaced a thin object by a few pixels vetoed it (riders 0.44 -> 0.22
        IoU and signs 0.83 -> 0.74 on the annotated seq0000 frame at `high`, K=2)."""
        frame = self.frames[t]
        heard = []  # (position, weight) of the neighbours that vote
        for d in range(-self.k, self.k + 1):
            n = t + d
            if d == 0 or not 0 <= n < len(self.frames) or not self._same_scene(t, n):
                continue
            prior = neighbour_weight(d, frame.full, self.frames[n].full)
            if prior > 0:
                heard.append((n, prior))
        points = min([frame.seg.scores] + [self.frames[n].seg.scores for n, _ in heard],
                     key=lambda grid: grid.dx * grid.dy)
        own = refined_log(frame.seg.scores, FUSION_REFINE, points)
        own_probs = softmax(own.probs)
        votes = []
        for n, prior in heard:
            neighbour = self.frames[n]
            motion = self._flow_between(t, n)
            match = np.float32(prior) * flow.match_weights(
                frame.grey, neighbour.grey, motion, own, width, height,
                flow.MATCH_SIGMA if frame.full else KEY_MATCH_SIGMA)
            warped = flow.warp_grid(neighbour.neighbour_scores(), motion, width, height, onto=own)
            votes.append((softmax(warped), match))
        if not votes:  # a key frame between one-pass frames, or alone in its scene
            alone = own.like(own_probs)
            return alone, confidence(alone)
        # the geometric mean needs thin objects protected (a label set without any of
        # PROTECTED_CLASSES fuses by the arithmetic one), and a one-pass frame takes its key
        # frames' detail whole
        geometric = frame.full and self.protected.size > 0
        mean = arithmetic_mean(own_probs, votes)
        total = geometric_mean(own_probs, votes) if geometric else mean
        if self.protected.size and frame.full:  # a one-pass frame takes its key frames' detail
            keep = np.isin(own_probs.argmax(axis=-1), self.protected)
            total[keep] = own_probs[keep]
            mean[keep] = own_probs[keep]
        return own.like(total), confidence(own.like(mean))

    def _forget(self, t: int) -> None:
        """Drop what no later frame needs: the emitted frame's pixels, the previous frame's
        labels, and scores, grey frames and flows more than K frames behind the next one."""
        self.frames[t].rgb = None
        if t > 0:
            self.frames[t - 1].labels = None
            self.frames[t - 1].chain = None
        old = t - max(self.k, 1)  # the last frame stays: the next one is checked for a cut against it
        if old >= 0:
            self.frames[old].seg = None
            self.frames[old].log_scores = None
            self.frames[old].grey = None
        self._flows = {pair: f for pair, f in self._flows.items() if min(pair) > old}
