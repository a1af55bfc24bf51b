"""The runtime's providers: each backend gets its own config section, tests swap providers
through the public seam (``Runtime.override``, the ``providers`` argument), and optional
capabilities are declared Protocols."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.base import (
    BatchImageProvider,
    Configurable,
    DocumentReader,
    ImageProvider,
    SelectableSearch,
    TracedImageProvider,
    TracedSearch,
)
from providers.testing import FakeSearch, FunctionLLM, MemoryStorage

JOB = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi."}}


def _llm(text: str) -> FunctionLLM:
    return FunctionLLM(lambda messages, config: text, model=f"fake-{text}")


async def test_override_serves_the_jobs_run_inside_it_and_ends_with_the_block(config_file: Path) -> None:
    from swarm.runtime import Runtime

    runtime = Runtime(config_file)
    storage = MemoryStorage()
    try:
        with Runtime.override(llm=_llm("from the override"), storage=storage):
            result = await runtime.run(dict(JOB))
            assert runtime.providers().storage is storage
        assert result["status"] == "COMPLETED", result["error"]
        assert result["output"]["text"] == "from the override"
        assert runtime.providers().storage is not storage  # the configured backend again
        assert type(runtime.providers().storage).__name__ == "LocalStorage"
    finally:
        await runtime.aclose()


async def test_override_reaches_a_runtime_built_inside_it_nests_and_beats_the_argument(config_file: Path) -> None:
    from swarm.runtime import Runtime

    search = FakeSearch([])
    runtime: Runtime | None = None
    try:
        with Runtime.override(llm=_llm("outer"), search=search):
            runtime = Runtime(config_file, providers={"llm": _llm("argument")})
            with Runtime.override(llm=_llm("inner")):
                assert (await runtime.run(dict(JOB)))["output"]["text"] == "inner"
                assert runtime.providers().search is search  # the outer block still holds
            assert (await runtime.run(dict(JOB)))["output"]["text"] == "outer"
        assert (await runtime.run(dict(JOB)))["output"]["text"] == "argument"
    finally:
        if runtime is not None:
            await runtime.aclose()


def test_override_refuses_an_unknown_kind(config_file: Path) -> None:
    from swarm.runtime import Runtime

    with pytest.raises(ValueError, match="unknown provider kind.*llm, search, storage, upscale, remove_background"):
        with Runtime.override(lmm=_llm("typo")):
            pass
    with pytest.raises(ValueError, match="serch"):
        Runtime(config_file, providers={"serch": FakeSearch([])})
    assert dict(Runtime.provider_overrides) == {}


def test_image_backends_get_their_section_and_the_image_settings_they_need(config_file: Path) -> None:
    import yaml

    from swarm.runtime import Runtime

    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["image"].update(models_dir="/srv/models", max_input_pixels=1234, max_output_pixels=5678)
    raw["providers"]["image"]["upscale"]["tile"] = 64
    raw["providers"]["image"]["rembg"]["batch_workers"] = 3
    config_file.write_text(yaml.safe_dump(raw))
    providers = Runtime(config_file).providers()
    upscale, remover = providers.get("upscale"), providers.get("remove_background")
    assert (upscale.settings.tile, upscale.settings.models_dir) == (64, "/srv/models")
    assert (remover.settings.batch_workers, remover.settings.models_dir) == (3, "/srv/models")
    for backend in (upscale, remover):
        assert (backend.limits.max_input_pixels, backend.limits.max_output_pixels) == (1234, 5678)


def test_local_storage_without_a_root_lives_in_the_state_dir(config_file: Path, swarm_home: Path) -> None:
    import yaml

    from swarm.runtime import Runtime

    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["storage"]["backends"]["local"] = {}
    config_file.write_text(yaml.safe_dump(raw))
    storage = Runtime(config_file).providers().storage
    assert storage.root == swarm_home / "artifacts"  # type: ignore[attr-defined]


def test_optional_capabilities_are_declared_protocols(tmp_path: Path) -> None:
    from providers.image.rembg_backend import RembgRemover, RembgSettings
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch
    from providers.search.searxng import SearxngSearch

    remover, upscaler = RembgRemover(RembgSettings()), RealESRGANUpscaler(UpscaleSettings())
    assert isinstance(remover, BatchImageProvider) and isinstance(remover, TracedImageProvider)
    assert isinstance(upscaler, TracedImageProvider) and not isinstance(upscaler, BatchImageProvider)
    assert isinstance(upscaler, ImageProvider)
    local = LocalIndexSearch([tmp_path], tmp_path / "index.sqlite")
    assert isinstance(local, DocumentReader) and isinstance(local, Configurable)
    assert isinstance(SearxngSearch(""), Configurable) and not isinstance(SearxngSearch(""), DocumentReader)
    chain = SearchChain([("local", local)])
    for capability in (TracedSearch, SelectableSearch, DocumentReader):
        assert isinstance(chain, capability)
    fake = FakeSearch([])
    for capability in (TracedSearch, SelectableSearch, DocumentReader, Configurable):
        assert not isinstance(fake, capability)
