"""The console's URL layout, under ``/harbor`` as Harbor's portal (``/`` leads there).

Pages are GETs; every change is a POST action (CSRF-checked). Repository names hold
slashes, so what follows a repository is introduced by ``/-/`` (no OCI path
component can be ``-``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from dockyard.console import (
    account,
    admin,
    authentication,
    dashboard,
    jobs,
    oidc,
    projects,
    registries,
    replication,
    repositories,
    scanning,
    scanning_admin,
)
from dockyard.console.web import (
    PREFIX,
    STATIC_DIR,
    Console,
    Handler,
    Page,
    action_endpoint,
    page_endpoint,
)
from dockyard.errors import EndpointNotFoundError

P = PREFIX + "/projects/{project}"
R = P + "/repositories/{repository:path}/-"
A = R + "/artifacts/{reference}"


def console_routes() -> list[BaseRoute]:
    """Every console route; ``create_app`` mounts them after the API's."""
    console = Console()

    def get(path: str, handler: Handler, *, public: bool = False) -> Route:
        return Route(path, page_endpoint(console, handler, public=public), methods=["GET"])

    def post(path: str, handler: Handler, *, public: bool = False) -> Route:
        return Route(path, action_endpoint(console, handler, public=public), methods=["POST"])

    async def home(request: Request) -> Response:
        return RedirectResponse(PREFIX + "/dashboard", status_code=303)

    async def favicon(request: Request) -> Response:
        # Browsers ask for /favicon.ico on every page whatever the <link> says.
        return FileResponse(
            STATIC_DIR / "favicon.ico",
            media_type="image/x-icon",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return [
        Route("/", home, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
        Route(PREFIX, home, methods=["GET"]),
        Route(PREFIX + "/", home, methods=["GET"]),
        Mount(PREFIX + "/static", StaticFiles(directory=STATIC_DIR), name="console-static"),
        # account
        get(PREFIX + "/sign-in", account.sign_in_form, public=True),
        post(PREFIX + "/sign-in", account.sign_in, public=True),
        post(PREFIX + "/sign-out", account.sign_out),
        get(PREFIX + "/preferences", account.preferences, public=True),
        get(PREFIX + "/account/profile", account.profile),
        post(PREFIX + "/account/profile", account.update_profile),
        post(PREFIX + "/account/password", account.change_password),
        post(PREFIX + "/account/cli-secret", account.regenerate_cli_secret),
        # OIDC sign-in (Harbor's /c/oidc paths) and a new user's choice of username
        get(oidc.LOGIN_PATH, oidc.login, public=True),
        get(oidc.CALLBACK_PATH, oidc.callback, public=True),
        get(oidc.ONBOARD_PATH, oidc.onboard_form, public=True),
        post(oidc.ONBOARD_PATH, oidc.onboard, public=True),
        get(PREFIX + "/dashboard", dashboard.dashboard),
        # projects
        get(PREFIX + "/projects", projects.project_list),
        post(PREFIX + "/projects", projects.create_project),
        # repositories and artifacts (before the project tabs: {repository:path} is greedy)
        get(A, repositories.artifact_detail),
        post(A + "/tags", repositories.add_tag),
        post(A + "/tags/delete", repositories.delete_tag),
        post(A + "/delete", repositories.delete_artifact),
        post(A + "/copy", repositories.copy_artifact),
        post(A + "/labels", repositories.add_label),
        post(A + "/labels/{label}/delete", repositories.remove_label),
        get(A + "/vulnerabilities", scanning.vulnerabilities),
        get(A + "/sbom", scanning.sbom_page),
        get(A + "/sbom/download", scanning.download_sbom),
        get(A + "/scan/{report}/log", scanning.scan_log),
        post(A + "/scan", scanning.scan_artifact),
        post(A + "/scan/stop", scanning.stop_scan),
        post(R + "/description", repositories.update_description),
        post(R + "/delete", repositories.delete_repository),
        get(P + "/repositories/{repository:path}", repositories.repository),
        # project tabs
        get(P, projects.summary),
        post(P + "/delete", projects.delete_project),
        get(P + "/repositories", projects.repositories),
        get(P + "/members", projects.members),
        post(P + "/members", projects.add_member),
        get(P + "/members/suggestions", projects.member_suggestions),
        get(P + "/members/ldap-picker", projects.member_ldap_picks),
        post(P + "/members/{member}/role", projects.change_member),
        post(P + "/members/{member}/delete", projects.remove_member),
        get(P + "/robots", projects.project_robots),
        post(P + "/robots", projects.create_project_robot),
        post(P + "/robots/{robot}/{verb}", projects.project_robot_action),
        get(P + "/labels", projects.project_labels),
        post(P + "/labels", projects.create_project_label),
        post(P + "/labels/{label}/update", projects.update_project_label),
        post(P + "/labels/{label}/delete", projects.delete_project_label),
        get(P + "/immutability", projects.immutable_rules),
        post(P + "/immutability", projects.create_immutable_rule),
        post(P + "/immutability/{rule}/{verb}", projects.immutable_rule_action),
        get(P + "/logs", projects.project_logs),
        get(P + "/configuration", projects.configuration),
        post(P + "/configuration", projects.update_configuration),
        post(P + "/trusted-keys", projects.add_trusted_key),
        post(P + "/trusted-keys/{key}/delete", projects.remove_trusted_key),
        post(P + "/cve-allowlist", scanning.update_project_allowlist),
        get(P + "/scanner", scanning.project_scanner),
        get(P + "/cve-export", scanning.cve_export_page),
        post(P + "/cve-export", scanning.request_cve_export),
        post(P + "/scanner", scanning.set_project_scanner),
        # administration
        get(admin.ADMIN + "/users", admin.user_list),
        post(admin.ADMIN + "/users", admin.create_user),
        post(admin.ADMIN + "/users/{user}/{verb}", admin.user_action),
        get(admin.ADMIN + "/groups", admin.group_list),
        post(admin.ADMIN + "/groups", admin.create_group),
        get(admin.ADMIN + "/groups/ldap-picker", admin.ldap_group_picks),
        post(admin.ADMIN + "/groups/{group}/rename", admin.rename_group),
        post(admin.ADMIN + "/groups/{group}/delete", admin.delete_group),
        get(admin.ADMIN + "/robots", admin.robot_list),
        post(admin.ADMIN + "/robots", admin.create_robot),
        post(admin.ADMIN + "/robots/{robot}/{verb}", admin.system_robot_action),
        get(admin.ADMIN + "/labels", admin.label_list),
        post(admin.ADMIN + "/labels", admin.create_label),
        post(admin.ADMIN + "/labels/{label}/update", admin.update_label),
        post(admin.ADMIN + "/labels/{label}/delete", admin.delete_label),
        get(admin.ADMIN + "/audit-logs", admin.audit_log),
        get(admin.ADMIN + "/quotas", admin.quota_list),
        post(admin.ADMIN + "/quotas/{quota}", admin.update_quota),
        get(admin.ADMIN + "/configuration", admin.configuration),
        post(admin.ADMIN + "/configuration", admin.update_configuration),
        post(authentication.AUTHENTICATION, authentication.update_authentication),
        post(authentication.LDAP_PING, authentication.ldap_ping),
        post(authentication.OIDC_PING, authentication.oidc_ping),
        post(authentication.LDAP_IMPORT, authentication.ldap_import),
        get(admin.ADMIN + "/system", admin.system_info),
        get(PREFIX + "/cve-exports/{execution}/download", scanning.download_cve_export),
        get(scanning_admin.SCANNERS, scanning_admin.scanner_list),
        post(scanning_admin.SCANNERS, scanning_admin.create_scanner),
        post(scanning_admin.SCANNERS + "/ping", scanning_admin.ping_new_scanner),
        post(
            scanning_admin.SCANNERS + "/scan-all", scanning_admin.scan_all_now
        ),  # before {scanner}/{verb}
        post(scanning_admin.SCANNERS + "/scan-all/stop", scanning_admin.stop_scan_all),
        post(scanning_admin.SCANNERS + "/scan-all/schedule", scanning_admin.scan_all_schedule),
        post(scanning_admin.SCANNERS + "/{scanner}/{verb}", scanning_admin.scanner_action),
        get(scanning.SYSTEM_ALLOWLIST, scanning.system_allowlist),
        get(scanning_admin.SECURITY_HUB, scanning_admin.security_hub),
        post(scanning.SYSTEM_ALLOWLIST, scanning.update_system_allowlist),
        *jobs.jobs_routes(get, post),  # GC, job service, audit purge, retention, webhooks
        *registries.routes(get, post),
        *replication.routes(get, post),
        get(PREFIX + "/{rest:path}", _not_found, public=True),
    ]


async def _not_found(page: Page) -> Response:
    raise EndpointNotFoundError(f"no console page {page.request.url.path}")


def post_routes() -> list[str]:
    """Every console POST path (the CSRF and authorisation tests walk them)."""
    return [
        r.path
        for r in console_routes()
        if isinstance(r, Route) and r.methods is not None and "POST" in r.methods
    ]
