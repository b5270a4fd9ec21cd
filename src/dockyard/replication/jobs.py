"""The replication job type: a plan task fans out into one task per artifact."""

from __future__ import annotations

from dockyard.jobs.runner import JobType
from dockyard.replication import service

job_types: list[JobType] = [
    JobType(service.JOB_TYPE, service.run_task, launcher=service.launch_scheduled),
]
