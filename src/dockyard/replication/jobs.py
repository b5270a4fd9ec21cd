"""The replication job type: a plan task fans out into one task per artifact; the end
of an execution is announced as the ``REPLICATION`` webhook event."""

from __future__ import annotations

from functools import partial

from dockyard.jobs.runner import JobType
from dockyard.replication import service
from dockyard.settings import Settings


def job_types_for(settings: Settings) -> list[JobType]:
    """The job type, its webhook naming this registry (``settings.public_url``)."""
    return [
        JobType(
            service.JOB_TYPE,
            service.run_task,
            launcher=service.launch_scheduled,
            on_finished=partial(service.announce_finished, settings.public_url),
        ),
    ]
