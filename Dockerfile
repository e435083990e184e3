# Custom Dataflow SDK container for beam_seg (see docs/dataflow.md).
#
# Beam's own Python SDK image (its /opt/apache/beam/boot entrypoint is kept) with beam_seg
# and all its dependencies installed, so workers start without pip-installing anything.
# The Beam version and the Python minor version must be the launcher's: 2.77.0 / 3.11.
#
#   docker build -t IMAGE .                                # TFLite models (the default)
#   docker build --build-arg WITH_TENSORFLOW=1 -t IMAGE .  # + SavedModel / frozen-graph models
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

ARG BEAM_VERSION
ARG WITH_TENSORFLOW=0
# Registry models baked into the image (downloaded and sha256-checked at build time), so
# workers never fetch them; empty for none. Other models are fetched once per worker VM.
ARG PRELOAD_MODELS=cityscapes-edgetpu-slim

WORKDIR /opt/beam_seg
COPY setup.py ./
COPY beam_seg ./beam_seg
COPY pipelines ./pipelines

# Beam is pinned to the image's version so that pip never swaps the SDK under the boot
# entrypoint; ffmpeg comes with imageio-ffmpeg, so no system packages are needed.
RUN if [ "$WITH_TENSORFLOW" = "1" ]; then package="/opt/beam_seg[tf]"; else package=/opt/beam_seg; fi \
    && pip install --no-cache-dir "apache-beam[gcp]==${BEAM_VERSION}" "$package" \
    && python -c "import beam_seg.transforms, ai_edge_litert.interpreter, imageio_ffmpeg; imageio_ffmpeg.get_ffmpeg_exe()"

# The offline mirror that beam_seg looks in first for registry models.
ENV BEAM_SEG_MODEL_DIR=/opt/beam_seg/models
RUN mkdir -p "$BEAM_SEG_MODEL_DIR" \
    && for name in $PRELOAD_MODELS; do \
         BEAM_SEG_MODEL_DIR= BEAM_SEG_CACHE_DIR="$BEAM_SEG_MODEL_DIR" \
           python -c "import sys; from beam_seg.models import resolve; print(resolve(sys.argv[1]).path)" "$name" \
         || exit 1; \
       done \
    && rm -f "$BEAM_SEG_MODEL_DIR"/*.lock
