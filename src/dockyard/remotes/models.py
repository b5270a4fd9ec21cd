"""Registry endpoints (Harbor's ``Registry``; its table is ``registry``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class RegistryEndpoint(Base):
    __tablename__ = "registry"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    type: Mapped[str] = mapped_column(String(64))
    """The adapter kind: ``docker-registry``, ``harbor``, ``docker-hub``."""
    description: Mapped[str] = mapped_column(Text, default="")
    credential_type: Mapped[str] = mapped_column(String(16), default="")
    """``basic``, ``oauth`` or ``secret``; "" when the endpoint is used anonymously."""
    access_key: Mapped[str] = mapped_column(String(255), default="")
    access_secret: Mapped[str] = mapped_column(Text, default="")
    """Sealed with the settings secret key (``system/secretbox.py``); never returned."""
    insecure: Mapped[bool] = mapped_column(Boolean, default=False)
    ca_certificate: Mapped[str] = mapped_column(Text, default="")
    """PEM CA bundle that verifies the endpoint's certificate instead of the system's."""
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    """``healthy``/``unhealthy`` as the last ping or info call found it, else ``unknown``."""
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
