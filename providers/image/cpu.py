"""What the image paths need to know about this CPU: architecture, model, usable cores, flags.

Read from ``/proc/cpuinfo`` where it exists. x86 lists ``model name``, ``cpu family``/``model``/
``stepping`` and ``flags``; ARM (aarch64) lists ``CPU implementer``/``CPU part``/``CPU variant``/
``CPU revision`` and ``Features`` (its bf16 is the ``bf16`` feature), and no model name; macOS
has no such file. Architecture (``platform.machine()``) and usable core count are read on every
platform, so two machines that have no ``/proc/cpuinfo`` still differ when their hardware does.

Nothing here imports anything heavy.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

#: architectures (``platform.machine()``) whose flags are ARM features
ARM_MACHINES = frozenset({"aarch64", "arm64", "armv8l", "armv8b"})
#: ARM feature names that a candidate table may ask for (the rest of a table's names are x86 flags)
ARM_FEATURES = frozenset({"bf16", "svebf16", "sve", "sve2", "i8mm", "asimd", "asimdhp", "fphp", "asimddp"})


@dataclass(frozen=True)
class CpuInfo:
    """What the path choice needs to know about a CPU.

    ``model`` and ``flags`` are what tests usually fake; ``arch`` (``platform.machine()``),
    ``cpus`` (the cores this process may use; 0: not read) and ``ident`` (x86
    ``family/model/stepping``, ARM ``implementer/part/variant/revision``) tell apart machines
    whose model name is the same or absent.
    """

    model: str
    flags: frozenset[str]
    arch: str = ""
    cpus: int = 0
    ident: str = ""

    @property
    def is_arm(self) -> bool:
        return self.arch.lower() in ARM_MACHINES


def usable_cpus() -> int:
    """The cores this process may run on (a container's limit), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: /proc/cpuinfo keys of the identification, in order: x86's, then ARM's
_X86_IDENT = ("cpu family", "model", "stepping")
_ARM_IDENT = ("CPU implementer", "CPU part", "CPU variant", "CPU revision")


def read_cpu_info(path: str = "/proc/cpuinfo", *, machine: Callable[[], str] = platform.machine,
                  cpus: Callable[[], int] = usable_cpus) -> CpuInfo:
    """The first CPU of ``path``: model name (ARM: ``ARM <implementer>:<part>``), flags (ARM:
    ``Features``), identification; with the architecture and usable cores of this machine.
    Where ``path`` is absent the model is ``platform.processor()`` or ``unknown`` and flags are empty."""
    arch, count = machine() or "unknown", cpus()
    fields: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuInfo(platform.processor() or "unknown", frozenset(), arch, count)
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first CPU's block only
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = frozenset((fields.get("flags") or fields.get("Features") or "").split())
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or ""
    ident_keys = _X86_IDENT if "cpu family" in fields else _ARM_IDENT
    ident = "/".join(fields.get(key, "?") for key in ident_keys) if any(k in fields for k in ident_keys) else ""
    if not model and "CPU part" in fields:
        model = f"ARM {fields.get('CPU implementer', '?')}:{fields['CPU part']}"
    return CpuInfo(model or "unknown", flags, arch, count, ident)


def named_flags(cpu: CpuInfo, names: Collection[str]) -> list[str]:
    """Of ``names`` (flags a candidate needs), those of ``cpu``'s kind (ARM features on ARM, x86
    flags elsewhere), sorted: what a why-text lists as missing. All of them where none is."""
    mine = [name for name in names if (name in ARM_FEATURES) == cpu.is_arm]
    return sorted(mine or names)
