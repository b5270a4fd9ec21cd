"""The retention job type: one task per repository; its schedule starts a whole execution."""

from __future__ import annotations

from dockyard.jobs.runner import JobType
from dockyard.retention import service

job_types: list[JobType] = [
    JobType(
        service.VENDOR_TYPE,
        service.run_task,
        launcher=service.launch_scheduled,
        on_finished=service.announce_finished,
    ),
]
