"""State of the image graph: storage keys and options only, never image bytes.

Checkpoints hold this state, so images travel by storage key; every node reads its input
by key and writes its output under a key derived from the job id (idempotent on resume).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class ImageState(TypedDict, total=False):
    action: str  # upscale | remove_background | pipeline | remove_background_batch
    job_id: str
    current_key: str  # the image the next step reads
    current_meta: dict[str, Any]  # {key, width, height, bytes} of the image a step stored last
    options: dict[str, Any]  # ImageConfig fields (model per step, scale, output_format, ...)
    steps_done: Annotated[list[str], operator.add]
    trace: Annotated[list[dict[str, Any]], operator.add]
    result: dict[str, Any]
    batch: list[dict[str, Any]]  # remove_background_batch: [{index, key}] of the images that were read
    batch_results: list[dict[str, Any]]  # one per batch entry: stored output, or {index, error}
