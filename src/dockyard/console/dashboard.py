"""The console's landing page: the signed-in user's projects, recent pushes and storage; for
system administrators also the system's totals and the job queues."""

from __future__ import annotations

from starlette.responses import Response

from dockyard.console.web import Page
from dockyard.iam.policy import Action, Resource, can
from dockyard.jobs import service as jobs
from dockyard.system import overview
from dockyard.system import service as system


async def dashboard(page: Page) -> Response:
    admin = page.principal.sysadmin
    sees_queues = can(page.principal, Action.LIST, Resource.JOBSERVICE_MONITOR, None)
    async with page.state.db.read() as session:
        seen = await overview.overview(session, page.principal)
        statistics = await system.statistics(session, page.principal) if admin else None
        queues = await jobs.queues(session, list(page.state.job_types)) if sees_queues else None
    return page.render(
        "dashboard.html",
        section="dashboard",
        overview=seen,
        statistics=statistics,
        queues=queues,
    )
