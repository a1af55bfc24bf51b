"""A batch's pace counts an image's wait for a model slot: an image started now waits as long.

The worry: ``BatchPace`` times each image from its start, its wait for a batch slot included
(slots are shared by every batch on the backend), and so stops a batch early. It does, by the
wait, but that is the time an image started now takes too: it waits behind the same other
batch. Timed on the model's run alone, an image is started that ends past the deadline, where
the dispatcher kills the job and every image it made is lost. The clock here is the deadline's
own: each image waits 6 s for a slot another job holds, then runs 1 s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from core.errors import InputError
from providers.base import ImageAction, ImageConfig
from providers.image import pull as weights_pull
from providers.image import rembg_backend
from providers.image.deadline import job_deadline
from providers.image.rembg_backend import RembgRemover, RembgSettings

SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
PHOTO = (Path(__file__).parent / "fixtures" / "grace_hopper_256.jpg").read_bytes()
SLOT_WAIT_S, RUN_S, DEADLINE_S = 6.0, 1.0, 20.0


async def test_an_image_is_started_only_if_its_slot_wait_and_run_end_before_the_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    now = [0.0]
    finished: list[float] = []
    real_infer, real_acquire = rembg_backend.infer, rembg_backend.acquire_reporting

    def waits_for_another_jobs_slot(acquire: Any, what: Any, **kwargs: Any) -> float:
        real_acquire(acquire, what, **kwargs)
        now[0] += SLOT_WAIT_S
        return SLOT_WAIT_S

    def runs(*args: Any, **kwargs: Any) -> Any:
        mask = real_infer(*args, **kwargs)
        now[0] += RUN_S
        finished.append(now[0])
        return mask

    monkeypatch.setattr(rembg_backend, "acquire_reporting", waits_for_another_jobs_slot)
    monkeypatch.setattr(rembg_backend, "infer", runs)
    remover = RembgRemover(RembgSettings(model="u2netp", models_dir=str(SHARED), precision="fp32", batch_workers=1))
    with job_deadline(DEADLINE_S, at=DEADLINE_S, clock=lambda: now[0]):
        outcome = await remover.process_batch([PHOTO] * 4, ImageAction.REMOVE_BACKGROUND, ImageConfig())

    # 7 s an image: started at 0 and 7 s; at 14 s (6 s left) the third would end at 21 s, past the
    # deadline; timed on its 1 s run alone (1.25 x 1 + 1 = 2.25 s needed) it would have been started
    assert finished == [7.0, 14.0]
    assert [item.data is not None for item in outcome.items] == [True, True, False, False]
    late = outcome.items[2].error
    assert isinstance(late, InputError) and late.field == "images[2]"
    assert "6.0 s were left of the job's deadline" in str(late) and "took up to 7.0 s" in str(late)
