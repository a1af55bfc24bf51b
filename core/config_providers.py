"""The ``models`` table and the ``providers:`` sections of ``config.yaml`` (llm, search, image,
storage), with the check every ``*_env`` key runs (``env_name``).

``core.config_schema`` re-exports every name here, beside the sections that are not a provider's.
A model's prices are in ``core.config_prices``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config_backends import (
    STORAGE_BACKENDS,
    SearchBackends,
    StorageBackends,
    StrictModel,
    as_details,
    chain_problems,
    checked_backends,
    only_local_index,
    raise_all,
    unknown_name,
)
from core.config_prices import Price
from core.rules import Tier

#: what a ``*_env`` key holds: the name of an environment variable, never the secret itself
ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"


#: a part (between ``_``) this long with digits and lower-case letters is a key's body, not a word
#: of a name: ``gsk_4fQx9LmZ2wRt7YpK3nB8vC1dE6hJ0sAa`` (Groq), a Mistral key, a Gemini key without
#: a ``-``, a hex token; names are written in capitals (``TOGETHERAIMIXTRAL8X22B_KEY`` is one)
_KEY_BODY = re.compile(r"(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[a-z])[A-Za-z0-9]{16,}")


def env_name(value: str | None) -> str | None:
    """A ``*_env`` key's value, checked to be a variable's name; the error never repeats the value
    (a key pasted here by mistake would otherwise reach the error, the log and the terminal).
    A key whose characters happen to make a valid name is refused too: it was printed as the name
    of an unset variable in ``config check``, ``doctor``, and every job's trace."""
    from core.redact import redact

    if value and not re.fullmatch(ENV_NAME_PATTERN, value):
        raise ValueError("must be the name of an environment variable (letters, digits and _, not starting"
                         " with a digit); put the key itself in that variable, not in config")
    if value and (redact(value) != value or any(_KEY_BODY.fullmatch(part) for part in value.split("_"))):
        raise ValueError("looks like a key, not the name of an environment variable (such as DEEPSEEK_API_KEY);"
                         " put the key itself in that variable, not in config")
    return value


class LocalServerSpec(StrictModel):
    """A GGUF model served on loopback by llama-cpp-python, started on demand."""

    gguf: str = Field(min_length=1, description="path, or pkg:<python package>/<file> inside an installed package")
    n_ctx: int = Field(default=4096, ge=256)
    n_threads: int | None = None
    autostart: bool = True
    startup_timeout_s: float = Field(default=90.0, gt=0)


#: litellm parameters every call sets from a key of its model (or from the call): not for extra_params
_SET_BY = {
    "model": "litellm_model", "messages": "the call", "api_key": "api_key_env", "api_base": "api_base",
    "base_url": "api_base", "timeout": "timeout_s", "request_timeout": "timeout_s", "max_tokens": "max_output_tokens",
    "stream": "stop_on_loop", "num_retries": "providers.llm.retry", "max_retries":
    "providers.llm.retry", "response_format": "structured_output",
}


#: the decoding settings a model with ``sampling: false`` is never sent
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


class ModelSpec(StrictModel):
    """One model the router may call, reached through litellm."""

    family: str = Field(min_length=1, description="provider family used by fallback_chain and routing")
    litellm_model: str = Field(min_length=1, description="litellm's model string, e.g. deepseek/deepseek-v4-flash")
    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None, description="env var holding the key; unset or empty -> model unavailable"
    )
    timeout_s: float = Field(default=60.0, gt=0, le=600)
    max_output_tokens: int = Field(default=1024, ge=1, le=1_000_000)  # 10,000,000 loaded, and every call failed
    structured_output: Literal["json_schema", "json_object_schema", "json_object", "prompt"] = (
        "json_schema"
    )
    price: Price = Price()
    local_server: LocalServerSpec | None = None
    context_tokens: int | None = Field(
        default=None, ge=256,
        description="the model's context window in tokens: a call's oldest conversation turns are left out"
        " to fit it (providers/llm/context_fit.py); unset: local_server.n_ctx, else not fitted",
    )
    extra_params: dict[str, Any] = Field(default_factory=dict)
    sampling: bool = Field(
        default=True,
        description="false: the model refuses sampling settings (Claude 5 models answer HTTP 400 to a"
        " temperature or top_p but the default), and no call sends them",
    )
    free_text_params: dict[str, Any] = Field(
        default_factory=dict,
        description="extra litellm params for free-text calls only (a call with a json_schema keeps"
        " its own): e.g. repeat and frequency penalties that stop a small model looping",
    )
    stop_on_loop: bool = Field(
        default=False,
        description="stream free-text answers and end one where a sentence comes round a third time"
        " (providers/llm/loop_guard.py): for small local models that loop to their token limit",
    )

    _env_name = field_validator("api_key_env")(env_name)
    #: the variables ``litellm_model`` is read from in the file (``${DEEPSEEK_Q4_MODEL:-...}``):
    #: set by ``core.config.load_config``, so an error about the name says which variable to change
    _litellm_model_env: tuple[str, ...] = PrivateAttr(default=())

    @property
    def litellm_model_env(self) -> tuple[str, ...]:
        """The environment variables config's ``litellm_model`` of this model was expanded from."""
        return self._litellm_model_env

    @property
    def context_window(self) -> int | None:
        """The context window a call is fitted to: ``context_tokens``, else a local server's
        ``n_ctx``; ``None``: unknown, the messages are sent as they are."""
        if self.context_tokens is not None:
            return self.context_tokens
        return self.local_server.n_ctx if self.local_server is not None else None

    @field_validator("extra_params", "free_text_params")
    @classmethod
    def _not_ours(cls, value: dict[str, Any]) -> dict[str, Any]:
        """A parameter each call sets from its own key is refused here: it overrode that key on every
        call without a word (``api_key`` written here, in clear, beside an unset ``api_key_env``;
        ``num_retries`` under the fallback chain; ``stream`` past the loop guard)."""
        taken = [f"{name!r} (set it with {_SET_BY[name]})" for name in value if name in _SET_BY]
        if taken:
            raise ValueError(f"{', '.join(taken)}: each call sets {'it' if len(taken) == 1 else 'these'} itself")
        return value

    @model_validator(mode="after")
    def _no_sampling_params(self) -> ModelSpec:
        """``sampling: false`` with a temperature in ``extra_params`` says two things at once."""
        given = [f"{where}.{name}" for where, params in (("extra_params", self.extra_params),
                 ("free_text_params", self.free_text_params)) for name in params if name in SAMPLING_PARAMS]
        if not self.sampling and given:
            raise_all("ModelSpec", [InitErrorDetails(type=PydanticCustomError(
                "sampling", "sampling is false (the model refuses sampling settings): remove {given}",
                {"given": ", ".join(given)}), loc=("sampling",), input=self.sampling)])
        return self

    @field_validator("api_base")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        """A base URL whose port is no port (``SWARM_LOCAL_LLM_PORT=99999``) passed ``config check``
        and then failed every job as an internal error ("Port out of range 0-65535")."""
        if value:
            import urllib.parse

            try:
                port = urllib.parse.urlsplit(value).port  # reading it checks it
            except ValueError:
                port = -1
            if port is not None and not 1 <= port <= 65535:  # 0 ("any free port") reaches no server
                raise ValueError("its port is no port (1-65535); check the variable that sets it")
        return value

    @model_validator(mode="after")
    def _local_base(self) -> ModelSpec:
        """A served model's ``api_base`` is where its server listens: checked at load, not at the
        first job (``config check`` said valid, and every job then failed on it)."""
        if self.local_server is not None:
            from urllib.parse import urlsplit

            parts = urlsplit(self.api_base or "")
            # the server is started on 127.0.0.1 (``[::1]`` loaded and every call then went unanswered)
            if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
                raise_all("ModelSpec", [InitErrorDetails(type=PydanticCustomError(
                    "local_base", "a local_server model needs api_base http://127.0.0.1:<port>/v1"),
                    loc=("api_base",), input=self.api_base)])
        return self


class CircuitSpec(StrictModel):
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)


class RetrySpec(StrictModel):
    """Retries only where they pay: a 429 whose Retry-After is short."""

    max_retry_after_s: float = Field(default=2.0, ge=0)
    max_retries: int = Field(default=1, ge=0, le=5)


class LLMSection(StrictModel):
    default: str
    tiers: dict[Tier, Annotated[list[str], Field(min_length=1)]]  # an empty tier is a typo: its jobs would get only the fallback chain
    fallback_chain: list[str] = Field(default_factory=list)
    circuit: CircuitSpec = CircuitSpec()
    retry: RetrySpec = RetrySpec()


class SearchSection(StrictModel):
    """``providers.search``: the chain tries ``fallback_chain`` in order (just ``default`` when it is empty)."""

    default: str = "local"
    fallback_chain: list[str] = Field(default_factory=list)
    backends: dict[str, dict[str, Any]] = Field(default_factory=only_local_index)
    circuit: CircuitSpec = CircuitSpec()

    @field_validator("backends")
    @classmethod
    def _typed_backends(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return checked_backends(SearchBackends, value)

    @model_validator(mode="wrap")
    @classmethod
    def _chain_names_configured_backends(cls, data: Any, handler: Any) -> Any:
        """Every name the chain may try has its settings under ``backends`` (the chain builds
        each one from them), checked on the raw section too, so a bad backend setting and a
        misspelled chain entry are named in the same run."""
        try:
            section = handler(data)
        except ValidationError as exc:
            raw = data if isinstance(data, Mapping) else {}
            names = chain_problems(raw.get("default", "local"), raw.get("fallback_chain"), raw.get("backends"))
            if not names:
                raise
            raise_all(cls.__name__, [*as_details(exc), *names])
            raise
        raise_all(cls.__name__, chain_problems(section.default, section.fallback_chain, section.backends))
        return section


class UpscaleSpec(StrictModel):
    model: str = "realesrgan-anime-6b"
    scale: int = Field(default=4, ge=1, le=8)
    tile: int = Field(default=256, ge=0)
    tile_pad: int = Field(default=16, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: auto: the fastest path within PSNR >= 45 dB of fp32, measured once per machine and model: on
    #: CPU bf16 where it has avx512_bf16/amx_bf16, fp16 where it has avx512_fp16/amx_fp16, ncnn (fp32 or bf16 storage); on
    #: CUDA fp16, and bf16 from sm_80. fp32: bit-level agreement (IEEE on CUDA: no TF32); bf16/fp16: pinned
    #: (emulated without them).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _renamed_half(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "half" in data:
            raise ValueError(
                "half was replaced by precision: auto (measured per machine), fp32, bf16 or fp16; "
                "half: off -> precision: fp32, half: on -> precision: bf16 on CPU / fp16 on CUDA"
            )
        return data


class RembgSpec(StrictModel):
    model: str = "isnet-anime"
    fallback_models: list[str] = Field(default_factory=lambda: ["u2netp"])
    #: zlib level of the PNG cutouts (1: ~4x faster than 6 for ~6% more bytes, same pixels)
    png_compress_level: int = Field(default=1, ge=0, le=9)
    #: images of one batch in flight at once (default: one per CPU core)
    batch_workers: int | None = Field(default=None, ge=1, le=64)
    #: auto: the fastest path within mask IoU >= 0.99 and mean alpha diff <= 1 level of onnxruntime
    #: fp32, measured once per machine and model (ncnn and ncnn-bf16 where ncnn is installed, torch
    #: bf16/fp16 where the CPU has them); fp32: onnxruntime fp32 (agrees with the rembg library);
    #: ncnn/ncnn-bf16/torch-fp32/bf16/fp16: those, pinned
    precision: Literal["auto", "fp32", "ncnn", "ncnn-bf16", "torch-fp32", "torch-bf16", "torch-fp16"] = "auto"


class ImageSection(StrictModel):
    upscale: UpscaleSpec = UpscaleSpec()
    rembg: RembgSpec = RembgSpec()
    #: empty: ``$SWARM_MODELS_DIR``, else ``<state_dir>/models`` (``core.paths.models_dir_default``)
    models_dir: str = ""
    max_input_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_input_pixels: int = Field(default=16_777_216, ge=1)
    max_output_pixels: int = Field(default=268_435_456, ge=1)


class StorageSection(StrictModel):
    """``providers.storage``: ``default`` is the backend every artifact goes to; when it fails,
    ``fallback_chain`` is tried in order (``providers.storage.chain``)."""

    default: str = "local"
    fallback_chain: list[str] = Field(default_factory=list)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)
    circuit: CircuitSpec = CircuitSpec()

    @field_validator("fallback_chain")
    @classmethod
    def _known_chain(cls, value: list[str]) -> list[str]:
        raise_all("StorageSection", [unknown_name((i,), name, "storage backend", list(STORAGE_BACKENDS))
                                     for i, name in enumerate(value) if name not in STORAGE_BACKENDS])
        return value

    @property
    def order(self) -> list[str]:
        """The stores in the order tried: ``default``, then ``fallback_chain`` (each once)."""
        return list(dict.fromkeys([self.default, *self.fallback_chain]))

    @field_validator("default")
    @classmethod
    def _known_default(cls, value: str) -> str:
        # local needs no settings (it defaults to SWARM_HOME/artifacts); s3 says what is missing
        raise_all("StorageSection", [] if value in STORAGE_BACKENDS else [
            unknown_name((), value, "storage backend", list(STORAGE_BACKENDS))])
        return value

    @field_validator("backends")
    @classmethod
    def _typed_backends(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return checked_backends(StorageBackends, value)


class ProvidersSection(StrictModel):
    llm: LLMSection
    search: SearchSection = SearchSection()
    image: ImageSection = ImageSection()
    storage: StorageSection = StorageSection()
