"""The kinds of remote registry Dockyard has an adapter for, and how one is opened.

Harbor's list has more (quay, gitlab, github-ghcr, aws-ecr, azure-acr, google-gcr,
artifact-hub, ali-acr, huawei-SWR, tencent-tcr, jfrog-artifactory, volcengine-cr…);
they may follow behind the same interface (``adapter.Adapter``). An endpoint of another
type is refused when it is created.
"""

from __future__ import annotations

from dockyard.http.egress import EgressPolicy
from dockyard.http.outbound import Resolver
from dockyard.remotes.adapter import Adapter, KindInfo
from dockyard.remotes.client import Endpoint, RemoteClient
from dockyard.remotes.distribution import DistributionAdapter
from dockyard.remotes.docker_hub import DockerHubAdapter, registry_url
from dockyard.remotes.docker_registry import DockerRegistryAdapter
from dockyard.remotes.harbor import HarborAdapter

ADAPTERS: dict[str, type[DistributionAdapter]] = {
    "docker-hub": DockerHubAdapter,
    "docker-registry": DockerRegistryAdapter,
    "harbor": HarborAdapter,
}
"""Each kind's adapter class, by Harbor's type name."""


def kind_info(kind: str) -> KindInfo:
    return ADAPTERS[kind].info


def open_adapter(
    kind: str,
    endpoint: Endpoint,
    egress: EgressPolicy,
    *,
    timeout: float,
    retries: int = 3,
    resolver: Resolver | None = None,
) -> Adapter:
    """An adapter of ``kind`` talking to ``endpoint``; close it (``aclose``) when done."""
    cls = ADAPTERS[kind]
    if cls is DockerHubAdapter:
        endpoint = Endpoint(
            registry_url(endpoint.url),
            endpoint.credential,
            endpoint.insecure,
            endpoint.ca_certificate,
        )
    client = RemoteClient(endpoint, egress, timeout=timeout, retries=retries, resolver=resolver)
    return cls(client)
