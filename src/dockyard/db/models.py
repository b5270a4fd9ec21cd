"""Imports every domain's models so ``Base.metadata`` knows all tables (Alembic, tests)."""

from dockyard.db.base import Base
from dockyard.iam.models import LoginSession, User, UserGroup, UserGroupMembership
from dockyard.projects.models import Project, ProjectMember, ProjectMetadata
from dockyard.registry.models import (
    Artifact,
    ArtifactAccessory,
    ArtifactBlob,
    ArtifactReference,
    Blob,
    BlobUpload,
    ProjectBlob,
    Repository,
    RepositoryBlob,
    Tag,
)
from dockyard.robots.models import Robot, RobotPermission
from dockyard.system.models import Property

__all__ = [
    "Artifact",
    "ArtifactAccessory",
    "ArtifactBlob",
    "ArtifactReference",
    "Base",
    "Blob",
    "BlobUpload",
    "LoginSession",
    "Project",
    "ProjectBlob",
    "ProjectMember",
    "ProjectMetadata",
    "Property",
    "Repository",
    "RepositoryBlob",
    "Robot",
    "RobotPermission",
    "Tag",
    "User",
    "UserGroup",
    "UserGroupMembership",
]
