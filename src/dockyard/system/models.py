"""System-wide key/value properties (Harbor's ``properties`` table)."""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base


class Property(Base):
    __tablename__ = "properties"

    k: Mapped[str] = mapped_column(String(64), primary_key=True)
    v: Mapped[str] = mapped_column(Text)
