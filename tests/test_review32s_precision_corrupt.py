"""Review 32s: a corrupt ``precision.json`` made ``swarm doctor`` print the same warning three times
(read once per model of each image role), and its precision lines said only "not measured yet",
never that the file is unreadable, that it is measured again, or what to do."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from providers.image.precision import decisions_file
from swarm.doctor_models import check_precision

#: a path every CPU may run: auto measures
TWO = {"fp32": frozenset[str](), "ncnn": frozenset[str]()}


def _doctor_precision_lines() -> list[str]:
    """What ``swarm doctor`` reads for its two precision lines: upscale, then remove_background
    with its fallback (``swarm.doctor``'s checks)."""
    upscale = check_precision("upscale", ["realesrgan-anime-6b"], "auto", "k", TWO)
    rembg = check_precision("remove_background", ["isnet-anime", "u2netp"], "auto", "k", TWO)
    return [f"{found.status} {found.detail} | {found.fix}" for found in (upscale, rembg)]


def test_a_corrupt_decisions_file_is_warned_of_once_and_said_by_doctor(
    swarm_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = decisions_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")

    with caplog.at_level(logging.WARNING, logger="providers.image.precision"):
        lines = _doctor_precision_lines()

    warned = [r.getMessage() for r in caplog.records if "unreadable precision cache" in r.getMessage()]
    assert len(warned) == 1 and str(path) in warned[0], warned
    for line in lines:
        assert line.startswith(f"warn auto, {path} is unreadable (JSONDecodeError: "), line
        assert "measures again" in line and f"delete {path}" in line and "not measured" not in line, line


def test_a_decisions_file_mended_then_corrupted_again_is_warned_of_again(
    swarm_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = decisions_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with caplog.at_level(logging.WARNING, logger="providers.image.precision"):
        for text in ("[1, 2]", '{"decisions": {}}', "[1, 2]"):
            path.write_text(text)
            _doctor_precision_lines()
    warned = [r.getMessage() for r in caplog.records if "unreadable precision cache" in r.getMessage()]
    assert len(warned) == 2 and all("no decisions object" in said for said in warned), warned


def test_an_absent_decisions_file_is_still_not_measured_yet(swarm_home: Path) -> None:
    for line in _doctor_precision_lines():
        assert line.startswith("info auto, not measured on this CPU yet"), line
