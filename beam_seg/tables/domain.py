"""Is the footage like the model's training footage? A warning read from the coverage table.

A model's mean top-class probability (`confidence`) drops on footage unlike what it learnt
from: the default Cityscapes model is sure of itself on the German city frames it was
trained on and much less so on US dashcam frames, where its labels are also much worse.
Each calibrated model has the confidence it gives on its own training domain and a
threshold below which an input is called out of domain, per quality preset (windows
average several views and change the figures), measured by `benchmarks/domain_calibration.py`
and documented in docs/out-of-domain.md. Models without a calibration get no warning.

An input is judged by its mean confidence over its frames; a run gets one warning that
counts its inputs below the threshold and names the stronger model to try.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb

from beam_seg import storage
from beam_seg.labels import sql_string

# The registry name of the stronger Cityscapes model the warning suggests (issue 20).
STRONGER_CITYSCAPES_MODEL = "efficientvit-b0-cityscapes"
PRESETS = ("fast", "balanced", "high")


@dataclass(frozen=True)
class Calibration:
    """One model's confidence on its own training domain, and where out of domain begins."""

    domain: str  # the training footage, as a user knows it ("Cityscapes")
    in_domain: Mapping[str, float]  # preset -> mean confidence on the training domain
    threshold: Mapping[str, float]  # preset -> an input below this looks out of domain
    alternative: str | None  # registry name of a stronger model to try, if any


# Measured by benchmarks/domain_calibration.py on 2026-12-05 (docs/out-of-domain.md has the
# figures), again after frames brighter than Cityscapes' began to be darkened before
# inference (`ModelSpec.exposure_mean`), and `high` again in the evening after its windows on
# 2:1 frames became the source's own resolution, mirrored: each threshold sits between
# every full-size Cityscapes input and the mean of each US set (bdd100k, dashcam stills,
# udacity clip), 0.015 (fast), 0.044 (balanced) and 0.045 (high) from both.
CALIBRATIONS: dict[str, Calibration] = {
    "cityscapes-edgetpu-slim": Calibration(
        "Cityscapes", in_domain={"fast": 0.949, "balanced": 0.957, "high": 0.962},
        threshold={"fast": 0.90, "balanced": 0.88, "high": 0.89},
        alternative=STRONGER_CITYSCAPES_MODEL),
}


@dataclass(frozen=True)
class InputConfidence:
    """One input's mean confidence over its frames, with what it takes to judge it."""

    input_id: str
    source_uri: str
    kind: str
    model: str
    frames: int
    confidence: float | None  # None: the model gives no scores


@dataclass(frozen=True)
class DomainWarning:
    """Inputs of one model that look unlike its training footage."""

    model: str
    low: tuple[InputConfidence, ...]  # the out-of-domain inputs, least confident first
    judged: int  # inputs of this model with a confidence
    mean_low: float  # mean confidence of the low inputs
    in_domain: float  # the model's mean on its training domain (at the low inputs' presets)
    domain: str
    alternative: str | None

    def lines(self) -> list[str]:
        """One or two plain lines for the summary and the report."""
        first = (f"{len(self.low)} of {self.judged} inputs look unlike the footage {self.model} "
                 f"was trained on (mean confidence {self.mean_low:.2f} against {self.in_domain:.2f} "
                 f"on {self.domain}): expect wrong labels there.")
        if self.alternative is None:
            return [first]
        return [first, f"Try --model {self.alternative} on them, and compare both runs with "
                       "`beam-seg report OUT OTHER_OUT`."]

    def least_confident(self, k: int = 8) -> str:
        """The low inputs by name, least confident first (for the report, which lists them)."""
        names = ", ".join(f"{i.input_id} ({i.confidence:.2f})" for i in self.low[:k])
        more = f" and {len(self.low) - k} more" if len(self.low) > k else ""
        return f"Least confident: {names}{more}."


def preset_for(kind: str, quality: str | None) -> str:
    """The preset an input of this kind ran at (the defaults of `RunConfig.preset`)."""
    return quality or ("high" if kind == "image" else "balanced")


def domain_warning(inputs: Iterable[InputConfidence], presets: Mapping[str, str | None],
                   calibrations: Mapping[str, Calibration] | None = None) -> list[DomainWarning]:
    """The warnings of a run, one per calibrated model with inputs below its threshold.

    Judged: the inputs of a calibrated model that have a confidence. `presets` maps an input
    id to the preset it ran at; an input whose preset is unknown is never called low.
    """
    calibrations = CALIBRATIONS if calibrations is None else calibrations
    judged: dict[str, int] = {}
    low: dict[str, list[tuple[InputConfidence, str]]] = {}
    for item in inputs:
        calibration = calibrations.get(item.model)
        if calibration is None or item.confidence is None:
            continue
        judged[item.model] = judged.get(item.model, 0) + 1
        preset = presets.get(item.input_id)
        if preset in calibration.threshold and item.confidence < calibration.threshold[preset]:
            low.setdefault(item.model, []).append((item, preset))
    warnings = []
    for model, items in sorted(low.items()):
        calibration = calibrations[model]
        items.sort(key=lambda pair: pair[0].confidence)
        warnings.append(DomainWarning(
            model, tuple(i for i, _ in items), judged[model],
            sum(i.confidence for i, _ in items) / len(items),
            sum(calibration.in_domain[p] for _, p in items) / len(items),
            calibration.domain, calibration.alternative))
    return warnings


def candidates(inputs: Iterable[InputConfidence],
               calibrations: Mapping[str, Calibration] | None = None) -> list[str]:
    """Ids of the inputs that are low at some preset: only theirs need a preset looked up."""
    calibrations = CALIBRATIONS if calibrations is None else calibrations
    return [i.input_id for i in inputs if i.model in calibrations and i.confidence is not None
            and i.confidence < max(calibrations[i.model].threshold.values())]


def presets_from_markers(out: str, input_ids: Sequence[str]) -> dict[str, str | None]:
    """The preset each finished input ran at, from its done marker's options (None: no
    readable marker, e.g. an input that failed)."""
    def read(iid: str) -> str | None:
        try:
            marker = json.loads(storage.read_bytes(storage.join(out, "_done", f"{iid}.json")))
            return preset_for(marker["kind"], marker["options"].get("quality"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    with ThreadPoolExecutor(16) as pool:  # one small object each: latency-bound on a bucket
        return dict(zip(input_ids, pool.map(read, input_ids), strict=True))


def warning_lines(warnings: Sequence[DomainWarning], name_inputs: bool = False) -> list[str]:
    """Each warning's lines; with `name_inputs`, a line naming its least confident inputs."""
    return [line for warning in warnings
            for line in [*warning.lines(), *([warning.least_confident()] if name_inputs else [])]]


def _query_confidences(con: duckdb.DuckDBPyConnection, source: str) -> list[InputConfidence]:
    rows = con.execute(f"""
        SELECT input_id, any_value(source_uri), any_value(kind), any_value(model), count(*),
               avg(confidence)
        FROM {source} GROUP BY input_id ORDER BY input_id""").fetchall()
    return [InputConfidence(*row) for row in rows]


def input_confidences(cov) -> list[InputConfidence]:
    """Every input's mean confidence, in one DuckDB query over a run's coverage view
    (`table.Coverage`); tables from before the confidence column give None."""
    if "confidence" not in cov.columns():
        return _query_confidences(cov.con, "(SELECT *, NULL::DOUBLE AS confidence FROM coverage)")
    return _query_confidences(cov.con, "coverage")


def run_confidences(out: str, input_ids: Iterable[str]) -> list[InputConfidence]:
    """The mean confidence of some inputs of OUT (a run's own), read from their coverage
    files alone and only the columns needed (remote files are copied to a scratch folder)."""
    wanted = set(input_ids)
    uris = [u for u in storage.list_files(storage.join(out, "coverage", "*", "*.parquet"))
            if u.replace("\\", "/").rsplit("/", 2)[-2] in wanted]
    if not uris:
        return []
    with tempfile.TemporaryDirectory(prefix="beam_seg_domain_") as scratch:
        if storage.is_local(out):
            paths = [storage.local_path(u) for u in uris]
        else:
            paths = [os.path.join(scratch, f"{i:06d}.parquet") for i in range(len(uris))]
            with ThreadPoolExecutor(16) as pool:  # many small objects: latency-bound
                list(pool.map(storage.download_file, uris, paths))
        listing = "[" + ", ".join(map(sql_string, paths)) + "]"
        con = duckdb.connect()
        try:
            return _query_confidences(con, f"read_parquet({listing}, union_by_name = true)")
        finally:
            con.close()
