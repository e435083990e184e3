"""Sliding-window quality presets: accuracy on real Cityscapes ground truth, cost and exactness."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from beam_seg import naming
from beam_seg.commands.evaluate import evaluate
from beam_seg.models import load_model, resolve
from beam_seg.models.interface import Model
from beam_seg.models.scoring import QUALITY_PRESETS, InferenceSettings, segment_frames
from beam_seg.models.tiling import TilePlan, TileSettings, WindowMerger, plan_tiles

from conftest import DATA, decode_all, make_index_video, read_index
from pipeline_helpers import label_maps, segment

pytestmark = pytest.mark.real_model  # the second tier: runs the real model

AACHEN = DATA / "cityscapes" / "train" / "aachen"


class CountingModel(Model):
    """Wraps a real model and counts the windows it is asked to segment."""

    def __init__(self, inner: Model):
        self.inner = inner
        self.name, self.input_spec = inner.name, inner.input_spec
        self.outputs_logits, self.num_classes = inner.outputs_logits, 19
        self.align_corners, self.score_size = inner.align_corners, inner.score_size
        self.windows = 0

    def predict(self, batch):
        self.windows += len(batch)
        return self.inner.predict(batch)


@pytest.fixture(scope="module")
def default_model():
    return CountingModel(load_model(resolve("cityscapes-edgetpu-slim")))


# high on 2:1 frames: 15 windows at the source's own resolution (1024 high), each mirrored too
@pytest.mark.parametrize("quality,most_windows", [("fast", 1), ("balanced", 4), ("high", 30)])
def test_window_count_per_2048x1024_frame(default_model, quality, most_windows):
    frame = np.zeros((1024, 2048, 3), np.uint8)
    default_model.windows = 0
    labels = segment_frames(default_model, [frame], InferenceSettings(tiles=QUALITY_PRESETS[quality]))[0]
    assert labels.shape == (1024, 2048)
    assert default_model.windows == most_windows


@pytest.mark.parametrize("size", [(96, 160), (540, 960), (1080, 1920), (300, 301)])
@pytest.mark.parametrize("quality", list(QUALITY_PRESETS))
def test_every_preset_gives_labels_at_the_source_size(default_model, quality, size):
    frame = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    (labels,) = segment_frames(default_model, [frame], InferenceSettings(tiles=QUALITY_PRESETS[quality]))
    assert labels.shape == size and labels.dtype == np.uint8


@pytest.fixture(scope="module")
def aachen_scores(tmp_path_factory):
    """The six annotated aachen frames through the pipeline at each preset, scored by `eval`."""
    images = sorted(AACHEN.glob("*_leftImg8bit.png"))
    assert len(images) == 6
    scores = {}
    for quality in QUALITY_PRESETS:
        out = tmp_path_factory.mktemp(f"aachen-{quality}")
        assert segment(images, out, "--quality", quality) == 0
        scores[quality] = evaluate(str(out), str(AACHEN))
    return scores


def test_presets_reach_their_miou_on_cityscapes(aachen_scores):
    for result in aachen_scores.values():
        assert result["frames"] == 6
    print({q: round(r["miou"], 4) for q, r in aachen_scores.items()})
    assert aachen_scores["fast"]["miou"] < aachen_scores["balanced"]["miou"] < aachen_scores["high"]["miou"]
    assert aachen_scores["balanced"]["miou"] >= 0.57
    assert aachen_scores["high"]["miou"] >= 0.66


def test_vote_prefers_the_window_that_sees_a_pixel_nearest_its_centre():
    """Two windows disagree on their overlap: each pixel takes the label of the nearer centre."""
    plan = TilePlan(6, 4, 4, 4, ((0, 0), (2, 0)))
    merger = WindowMerger(plan, logits=False, channels=3)
    merger.add((0, 0), np.full((4, 4), 1, np.uint8))
    merger.add((2, 0), np.full((4, 4), 2, np.uint8))
    merged = merger.result()
    assert (merged[:, :2] == 1).all() and (merged[:, 4:] == 2).all()  # only one window covers these
    # overlap columns 2,3: column 2 is window A's 3rd column and window B's 1st (edge) -> A
    assert (merged[1:3, 2] == 1).all() and (merged[1:3, 3] == 2).all()


def test_logits_are_averaged_not_voted():
    """A confident window outweighs a hesitant one on their overlap (a vote would tie)."""
    plan = TilePlan(4, 4, 4, 4, ((0, 0), (0, 0)))
    merger = WindowMerger(plan, logits=True, channels=2)
    merger.add((0, 0), np.dstack([np.full((4, 4), 0.0), np.full((4, 4), 5.0)]).astype(np.float32))
    merger.add((0, 0), np.dstack([np.full((4, 4), 1.0), np.full((4, 4), 0.0)]).astype(np.float32))
    assert (merger.result() == 1).all()


def test_plans_cover_the_frame_and_small_frames_take_one_pass():
    for width, height in [(2048, 1024), (960, 540), (1920, 1080), (517, 301)]:
        presets = [*QUALITY_PRESETS["balanced"].scales(width, height, 513, 513),
                   *QUALITY_PRESETS["high"].scales(width, height, 513, 513), TileSettings(1.5, 0.5)]
        for settings, step in itertools.product([s for s in presets if s is not None], (1, 16)):
            plan = plan_tiles(width, height, 513, 513, settings, step)
            assert all(x % step == 0 and y % step == 0 for x, y in plan.origins)
            covered = np.zeros((plan.work_height, plan.work_width), bool)
            for x, y in plan.origins:
                covered[y:y + 513, x:x + 513] = True
            assert covered.all(), (width, height, settings)
    assert plan_tiles(400, 200, 513, 513, TileSettings(scale=1.0)).count == 1


@pytest.mark.parametrize("quality", ["balanced", "high"])
def test_tiled_videos_keep_exact_frame_order_and_count(tmp_path, quality):
    source = make_index_video(tmp_path / "numbered.mp4", 17, width=320, height=192)
    out = tmp_path / "out"
    assert segment([source], out, "--quality", quality, "--segment-frames", "5", "--alpha", "0",
                   "--legend", "none") == 0  # the video is the frames themselves: no key over the bars
    iid = naming.input_id(str(source))
    assert [read_index(f) for f in decode_all(out / "videos" / f"{iid}.mp4")] == list(range(17))
    maps = label_maps(out)
    assert len(maps) == 17 and all(m.shape == (192, 320) for m in maps.values())


def test_absurdly_elongated_frames_are_refused_not_tiled():
    with pytest.raises(ValueError, match="windows"):
        plan_tiles(100_000, 10, 513, 513, TileSettings(scale=2.0))
