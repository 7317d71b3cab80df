"""The scheduler jobs the use cases commit with their state changes.

Job ids are meaningful (``"<kind>:<grant id>"``), so scheduling again moves a
job and cancelling is exact. The kinds are ``provision``, ``expire``,
``remind``, ``timeout``, ``cleanup`` and ``card``; :meth:`bot.workflow.Workflow.register_jobs`
maps each kind to its use case.
"""

from __future__ import annotations

from datetime import datetime

from bot.models import Grant
from bot.scheduler import Job
from bot.usecases.deps import Deps


def provision_job(grant_id: str) -> str:
    return f"provision:{grant_id}"


def expire_job(grant_id: str) -> str:
    return f"expire:{grant_id}"


def remind_job(grant_id: str) -> str:
    return f"remind:{grant_id}"


def timeout_job(grant_id: str) -> str:
    return f"timeout:{grant_id}"


def cleanup_job(grant_id: str) -> str:
    return f"cleanup:{grant_id}"


def card_job(grant_id: str) -> str:
    return f"card:{grant_id}"


def live_jobs(grant_id: str) -> list[str]:
    """The jobs of a live grant that ending it cancels (its expiry, reminder, provisioning)."""
    return [expire_job(grant_id), remind_job(grant_id), provision_job(grant_id)]


def job(job_id: str, at: datetime, **data: str) -> Job:
    """The job ``job_id`` due at ``at``; its kind is the id's prefix."""
    kind = job_id.split(":", 1)[0]
    return Job(id=job_id, kind=kind, due=at.timestamp(), data=dict(data))


def grant_of(j: Job) -> str:
    """The grant id a job is about (the part of its id after the kind)."""
    return j.id.split(":", 1)[1]


def expiry_jobs(deps: Deps, g: Grant) -> list[Job]:
    """The expiry job of an active grant, and its reminder while one is still ahead."""
    assert g.expires_at is not None
    jobs = [job(expire_job(g.id), g.expires_at)]
    remind_at = g.expires_at - deps.policy.defaults.reminder_before
    if remind_at > deps.clock():
        jobs.append(job(remind_job(g.id), remind_at))
    return jobs


def cleanup_safety_net(deps: Deps, g: Grant, now: datetime) -> Job:
    """The durable cleanup of an ended grant, a grace period after ``now``."""
    return job(cleanup_job(g.id), now + deps.cleanup_grace, cluster=g.cluster)
