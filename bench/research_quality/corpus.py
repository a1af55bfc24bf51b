"""The bench's corpus: the README texts that installed packages carry in their metadata
(``importlib.metadata``: the message body, else the ``Description`` field). Nobody on the
project wrote them. A copy is committed under ``corpus/`` so every machine runs the same text;
``python -m bench.research_quality.corpus`` rewrites it from the packages installed here.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE / "corpus"
#: the packages whose descriptions make the corpus (permissive licences; MPL-licensed ones left out)
PACKAGES = (
    "attrs", "backoff", "brotli", "diskcache", "distro", "h11", "httpx", "idna", "jmespath", "langgraph",
    "mcp", "pluggy", "portalocker", "psutil", "pytest", "python-dotenv", "rich", "sortedcontainers",
    "tomli", "truststore", "typer", "uvicorn", "websockets", "xmltodict", "xxhash",
)
#: each description is cut at the last paragraph end before this many characters
MAX_CHARS = 5000


def description(package: str) -> tuple[str, dict[str, str]]:
    """A package's README text and where it came from: name, version, licence, content type."""
    meta: Any = importlib.metadata.metadata(package)  # an email.message.Message underneath
    body = meta.get_payload() or meta.get("Description") or ""
    body = body.replace("\r\n", "\n").strip() + "\n"
    if len(body) > MAX_CHARS:
        cut = body.rfind("\n\n", 0, MAX_CHARS)
        body = body[: cut if cut > 0 else MAX_CHARS].rstrip() + "\n"
    kind = meta.get("Description-Content-Type") or ""
    licence = (meta.get("License-Expression") or meta.get("License") or "").strip()
    info = {"package": meta["Name"], "version": meta["Version"], "license": licence.splitlines()[0][:60] if licence else "",
            "content_type": kind}
    return body, info


def file_name(package: str, content_type: str) -> str:
    """``<package>.md`` for Markdown, ``<package>.txt`` for reStructuredText or unknown."""
    slug = re.sub(r"[^a-z0-9]+", "-", package.lower()).strip("-")
    return f"{slug}.md" if "markdown" in content_type else f"{slug}.txt"


def write_corpus(dest: Path = CORPUS_DIR, packages: tuple[str, ...] = PACKAGES) -> list[dict[str, str]]:
    """Write each package's description to ``dest`` (sorted, byte-identical for the same versions)
    and ``SOURCES.json`` beside the folder's files; returns the list written there."""
    dest.mkdir(parents=True, exist_ok=True)
    listed = []
    for package in sorted(packages):
        body, info = description(package)
        name = file_name(package, info["content_type"])
        (dest / name).write_text(body, encoding="utf-8")
        listed.append({"file": name, **info, "chars": str(len(body))})
    (dest / "SOURCES.json").write_text(json.dumps(listed, indent=1) + "\n", encoding="utf-8")
    return listed


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS_DIR
    for row in write_corpus(target):
        print(f"{row['file']:24} {row['package']} {row['version']} ({row['license']}) {row['chars']} chars")
