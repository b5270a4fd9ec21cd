"""The retention job types the workers run (filled in with the feature)."""

from __future__ import annotations

from dockyard.jobs.runner import JobType

job_types: list[JobType] = []
