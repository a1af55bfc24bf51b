"""return_base64 on a result over the job's own base64 cap: the client read the job's note
("output is 33078510 bytes; inline limit 4194304") beside a preview line naming
mcp.max_inline_image_bytes=2097152, two limits for one answer, the first one no setting."""

from __future__ import annotations

from typing import Any

from mcp_server.results import image_output
from mcp_server.texts import result_text

LIMIT = 2_097_152  # mcp.max_inline_image_bytes as shipped
NOTE = f"result is over mcp.max_inline_image_bytes={LIMIT}; download it from url"


def _envelope(output: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": "job-1", "status": "COMPLETED", "project": "image_tools", "action": "upscale",
            "output": output, "trace": [], "totals": {}}


def test_a_single_result_over_the_jobs_cap_names_the_doors_limit() -> None:
    # as graphs/image/action.py answers a 3400x3400 upscale asked with return_base64
    result = _envelope({"image_key": "image_tools/job-1/upscale.png", "width": 3400, "height": 3400,
                        "format": "png", "bytes": 33_078_510,
                        "inline_omitted": "output is 33078510 bytes; inline limit 4194304"})
    output = image_output(result, return_base64=True, inline_limit=LIMIT)
    assert output.image_base64 is None
    assert output.details["inline_omitted"] == NOTE
    text = result_text(output)
    assert NOTE in text and "4194304" not in text


def test_a_batch_entry_left_out_by_the_job_says_why_in_the_clients_words() -> None:
    # graphs/image/batch.py: past 4 MiB in all, "read image_key" (a field the client never sees)
    small, big = 1_500_000, 3_000_000
    result = _envelope({"results": [
        {"index": 0, "image_key": "k/0.png", "bytes": big, "inline_omitted": "outputs pass 4194304 bytes in all; read image_key"},
        {"index": 1, "image_key": "k/1.png", "bytes": small, "inline_omitted": "outputs pass 4194304 bytes in all; read image_key"},
    ]})
    output = image_output(result, return_base64=True, inline_limit=LIMIT)
    assert output.results is not None
    first, second = output.results
    assert first["inline_omitted"] == NOTE  # over the door's own limit as well
    assert "image_key" not in second["inline_omitted"] and "4,194,304 bytes" in second["inline_omitted"]
    assert "batch" in second["inline_omitted"]
