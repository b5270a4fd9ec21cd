"""``harbor``: a Harbor (or Dockyard) remote. Images move over ``/v2/``; projects,
repositories, labels and tag deletes use Harbor's REST API (``/api/v2.0``), with the
endpoint's credentials as Basic (what that API takes)."""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import quote

from dockyard.remotes.adapter import (
    FILTER_LABEL,
    FILTER_NAME,
    FILTER_RESOURCE,
    FILTER_TAG,
    TRIGGER_EVENT,
    TRIGGER_MANUAL,
    TRIGGER_SCHEDULED,
    FilterSpec,
    KindInfo,
)
from dockyard.remotes.client import RemoteProtocolError, decode_json, discard, read_limited
from dockyard.remotes.distribution import DistributionAdapter, fail

API = "/api/v2.0"
PAGE_SIZE = 100
MAX_PAGES = 10_000


def _repository_segment(name: str) -> str:
    """A repository name inside a project as Harbor's API wants it in a path: encoded
    twice (``a/b`` -> ``a%252Fb``)."""
    return quote(quote(name, safe=""), safe="")


class HarborAdapter(DistributionAdapter):
    info: ClassVar[KindInfo] = KindInfo(
        kind="harbor",
        description="Harbor, or another Dockyard (Harbor's API for projects, labels, deletes).",
        filters=(
            FilterSpec(FILTER_NAME, "input"),
            FilterSpec(FILTER_TAG, "input"),
            FilterSpec(FILTER_LABEL, "list"),
            FilterSpec(FILTER_RESOURCE, "radio", ("image", "artifact")),
        ),
        triggers=(TRIGGER_MANUAL, TRIGGER_SCHEDULED, TRIGGER_EVENT),
        copy_by_chunk=True,
        lists_namespaces=True,
    )

    async def _api(
        self, method: str, path: str, params: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, Any]:
        content = None
        headers = {"Accept": "application/json"}
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        response = await self.client.request(
            method, API + path, params=params, headers=headers, content=content, api=True
        )
        if response.status_code >= 300 and response.status_code != 409:
            raise await fail(response, f"{method} {API}{path}")
        raw = await read_limited(response)
        return response.status_code, (decode_json(raw, API + path) if raw.strip() else None)

    async def _paged(self, path: str, params: dict[str, str] | None = None) -> list[Any]:
        items: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            query = {**(params or {}), "page": str(page), "page_size": str(PAGE_SIZE)}
            _, found = await self._api("GET", path, query)
            if not isinstance(found, list):
                raise RemoteProtocolError(f"{API}{path}: the answer is not a list")
            items.extend(found)
            if len(found) < PAGE_SIZE:
                return items
        raise RemoteProtocolError(f"{API}{path}: more than {MAX_PAGES} pages")

    async def list_namespaces(self) -> list[str]:
        """The projects the credentials can see."""
        projects = await self._paged("/projects")
        return [str(p["name"]) for p in projects if isinstance(p, dict) and "name" in p]

    async def list_repositories(self, namespace: str | None = None) -> list[str]:
        namespaces = [namespace] if namespace else await self.list_namespaces()
        names: list[str] = []
        for project in namespaces:
            found = await self._paged(f"/projects/{quote(project, safe='')}/repositories")
            names.extend(str(r["name"]) for r in found if isinstance(r, dict) and "name" in r)
        return names

    async def delete_tag(self, repository: str, tag: str) -> None:
        project, _, rest = self.repository(repository).partition("/")
        await self._api(
            "DELETE",
            f"/projects/{quote(project, safe='')}/repositories/{_repository_segment(rest)}"
            f"/artifacts/{quote(tag, safe='')}/tags/{quote(tag, safe='')}",
        )

    async def labels_of(self, repository: str, reference: str) -> list[str]:
        """The names of the labels on an artifact (for label filters and copying them)."""
        project, _, rest = self.repository(repository).partition("/")
        _, artifact = await self._api(
            "GET",
            f"/projects/{quote(project, safe='')}/repositories/{_repository_segment(rest)}"
            f"/artifacts/{quote(reference, safe=':')}",
            {"with_label": "true"},
        )
        labels = artifact.get("labels") if isinstance(artifact, dict) else None
        return [str(label["name"]) for label in labels or [] if isinstance(label, dict)]

    async def add_labels(self, repository: str, reference: str, names: list[str]) -> None:
        """Put the labels ``names`` on an artifact: global labels of those names, made
        where the remote has none yet (an artifact labelled already is left as it is)."""
        project, _, rest = self.repository(repository).partition("/")
        artifact = (
            f"/projects/{quote(project, safe='')}/repositories/{_repository_segment(rest)}"
            f"/artifacts/{quote(reference, safe=':')}"
        )
        for name in names:
            label_id = await self._global_label(name)
            await self._api("POST", artifact + "/labels", body={"id": label_id})

    async def _global_label(self, name: str) -> int:
        for attempt in range(2):
            for label in await self._paged("/labels", {"scope": "g", "name": name}):
                if isinstance(label, dict) and label.get("name") == name:
                    return int(label["id"])
            if attempt == 0:
                # A 409 means another copy made it meanwhile: it is listed the next time.
                await self._api("POST", "/labels", body={"name": name, "scope": "g"})
        raise RemoteProtocolError(f"{API}/labels: the label {name!r} was made but is not listed")

    async def ensure_namespace(self, namespace: str) -> None:
        """Create the project (private) unless it exists; a 409 means someone else did."""
        response = await self.client.request(
            "HEAD", API + "/projects", params={"project_name": namespace}, api=True
        )
        await discard(response)
        if response.status_code == 200:
            return
        if response.status_code != 404:
            raise await fail(response, f"project {namespace}")
        await self._api(
            "POST", "/projects", body={"project_name": namespace, "metadata": {"public": "false"}}
        )
