"""Idempotency keys: the same key names the same job, so a retried submission runs once.

A job's id is its checkpoint thread. ``job_id_for_key`` maps ``(project, action, key)`` to a
deterministic id, so a second submission with the same key finds the first one's checkpoint:
finished -> its stored result comes back without calling any provider; interrupted -> it
resumes where the first stopped. The input of the second submission is not compared: the key
alone decides (as with HTTP ``Idempotency-Key``), so a client must not reuse a key for a
different request.
"""

from __future__ import annotations

import hashlib


def job_id_for_key(project: str, action: str, key: str, owner: str = "") -> str:
    """The job id that ``key`` stands for (``idem-`` + 32 hex chars, valid as a job_id).

    ``owner`` scopes keys per client where a door knows who is calling, so two clients that
    pick the same key do not share a job.
    """
    digest = hashlib.sha256("\x00".join((owner, project, action, key)).encode()).hexdigest()
    return f"idem-{digest[:32]}"
