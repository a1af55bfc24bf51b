"""Whether a model of the ``models`` table can be reached, judged before calling it: its key
(set here, or by a RunPod job's client: ``core.credentials``) and, where its ``api_base`` is
OpenAI-compatible, one cheap ``GET {api_base}/models``.

The probe is the one request both a model's ``health_check`` and ``swarm doctor`` send; each
reads the ``ModelsProbe`` its own way (a yes or no; or what failed and how to fix it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from core.credentials import credential, missing_credential

if TYPE_CHECKING:
    from core.config import ModelSpec

#: how long ``GET /models`` may take before the model counts as unreachable
HEALTH_TIMEOUT_S = 3.0
#: litellm model prefixes whose api_base answers ``GET /models`` (OpenAI-compatible)
_PROBED_PREFIXES = ("openai/", "deepseek/")


def missing_key_reason(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be called right now, judged without a network call: its key is set
    neither here nor, in a RunPod job, by the job's client (``core.credentials``)."""
    return missing_credential(spec.api_key_env) if spec.api_key_env else None


def probes_network(spec: ModelSpec) -> bool:
    """Whether ``spec`` has a cheap probe: an OpenAI-compatible ``api_base`` (``openai/`` models,
    and DeepSeek's API, which has ``GET /models`` too)."""
    return bool(spec.api_base) and spec.litellm_model.startswith(_PROBED_PREFIXES)


def models_url(spec: ModelSpec) -> str:
    """The URL the probe sends ``GET`` to: ``{api_base}/models``."""
    return f"{(spec.api_base or '').rstrip('/')}/models"


@dataclass(frozen=True)
class ModelsProbe:
    """What ``GET url`` got: an HTTP ``status``, or no answer (``no_answer`` says how, and
    ``error_class`` names the exception)."""

    url: str
    status: int | None = None
    no_answer: Literal["timeout", "connect", "other"] | None = None
    error_class: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400


async def probe_models(spec: ModelSpec) -> ModelsProbe:
    """``GET {api_base}/models`` with the model's key, within ``HEALTH_TIMEOUT_S``. Never raises
    for the network: a timeout, a refused connection or another transport failure is a result."""
    import httpx

    url = models_url(spec)
    headers = {"Authorization": f"Bearer {credential(spec.api_key_env)}"} if spec.api_key_env else {}
    try:
        async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as client:
            reply = await client.get(url, headers=headers)
    except httpx.TimeoutException as exc:
        return ModelsProbe(url, no_answer="timeout", error_class=type(exc).__name__)
    except httpx.ConnectError as exc:
        return ModelsProbe(url, no_answer="connect", error_class=type(exc).__name__)
    except httpx.HTTPError as exc:
        return ModelsProbe(url, no_answer="other", error_class=type(exc).__name__)
    return ModelsProbe(url, status=reply.status_code)
