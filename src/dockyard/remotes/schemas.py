"""Harbor's registry endpoint shapes (swagger definitions of the same names)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class RegistryCredential(BaseModel):
    type: str | None = None
    """``basic``, ``oauth`` or ``secret``."""
    access_key: str | None = None
    access_secret: str | None = None
    """Accepted on create; answered as ``*****`` when one is stored (as Harbor does)."""


class Registry(BaseModel):
    id: int | None = None
    url: str | None = None
    name: str | None = None
    credential: RegistryCredential | None = None
    type: str | None = None
    insecure: bool | None = None
    ca_certificate: str | None = None
    description: str | None = None
    status: str | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None


class RegistryUpdate(BaseModel):
    name: str | None = None
    description: str | None = None
    url: str | None = None
    credential_type: str | None = None
    access_key: str | None = None
    access_secret: str | None = None
    insecure: bool | None = None
    ca_certificate: str | None = None


class RegistryPing(RegistryUpdate):
    """A saved endpoint (``id``, the body's fields overriding its own) or an unsaved one."""

    id: int | None = None
    type: str | None = None


class FilterStyle(BaseModel):
    type: str | None = None
    style: str | None = None
    values: list[str] | None = None


class RegistryInfo(BaseModel):
    type: str | None = None
    description: str | None = None
    supported_resource_filters: list[FilterStyle] | None = None
    supported_triggers: list[str] | None = None
    supported_copy_by_chunk: bool | None = None


class RegistryEndpointItem(BaseModel):
    """Harbor's ``RegistryEndpoint`` (a key and value of an endpoint pattern)."""

    key: str | None = None
    value: str | None = None


class RegistryProviderEndpointPattern(BaseModel):
    endpoint_type: str | None = None
    endpoints: list[RegistryEndpointItem] | None = None


class RegistryProviderCredentialPattern(BaseModel):
    access_key_type: str | None = None
    access_key_data: str | None = None
    access_secret_type: str | None = None
    access_secret_data: str | None = None


class RegistryProviderInfo(BaseModel):
    endpoint_pattern: RegistryProviderEndpointPattern | None = None
    credential_pattern: RegistryProviderCredentialPattern | None = None
