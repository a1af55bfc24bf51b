"""A model named once by its name and once by its family (``consensus(models=["model-a", "family-a"])``)
was asked twice and its one view stood as two agreeing positions: the literal-duplicate check let it
through, and the panel's "one model's view never reads as two" rule held for stand-ins only."""

from __future__ import annotations

from test_consensus import Models, config, context, job

from graphs.consensus.nodes import panel
from swarm.dispatcher import dispatch


async def test_a_model_named_by_name_and_by_family_is_one_position_asked_once() -> None:
    cfg = config(models=["model-a", "family-a", "model-b"], synthesizer="synth")
    models = Models(cfg)
    result = await dispatch(job(), context(cfg, models.router, []))
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert [(p["asked"], p["model"]) for p in out["positions"]] == [("model-a", "model-a"), ("model-b", "model-b")]
    assert [(f["asked"], f["error_type"]) for f in out["failed"]] == [("family-a", "AlreadyOnPanel")]
    assert "model-a" in out["failed"][0]["error"] and "its fallback" not in out["failed"][0]["error"]
    asked = [s["model"] for s in result["trace"] if s["step"] == "ask" and s["kind"] == "llm" and s["outcome"] == "ok"]
    assert sorted(asked) == ["model-a", "model-b"], asked  # model-a once, not paid twice
    assert models.prompts["synth"][-1].content.count('<answer model="model-a"') == 1


async def test_with_stances_a_model_named_twice_argues_each_side() -> None:
    cfg = config(models=["model-a", "family-a"], synthesizer="synth")
    out = (await dispatch(job(stances=["for", "against"]), context(cfg, Models(cfg).router, [])))["output"]
    assert [(p["model"], p["stance"]) for p in out["positions"]] == [("model-a", "for"), ("model-a", "against")]
    assert out["failed"] == []


def test_the_same_model_answering_twice_with_one_stance_counts_once() -> None:
    """Where no prediction kept it from being asked (a provider without ``first_callable``)."""
    def answer(index: int, asked: str) -> dict[str, object]:
        return {"index": index, "asked": asked, "model": "model-a", "stance": None, "status": "answered", "text": "yes"}

    positions, failed = panel([answer(1, "family-a"), answer(0, "model-a")])
    assert [p["asked"] for p in positions] == ["model-a"]
    assert [(f["asked"], f["error_type"]) for f in failed] == [("family-a", "AlreadyOnPanel")]
