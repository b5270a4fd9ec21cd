"""Imports every domain's models so ``Base.metadata`` knows all tables (Alembic, tests)."""

from dockyard.audit.models import AuditLog
from dockyard.db.base import Base
from dockyard.iam.models import LoginSession, User, UserGroup, UserGroupMembership
from dockyard.immutability.models import ImmutableTagRule
from dockyard.jobs.models import Execution, JobQueue, JobWorker, Schedule, Task, TaskLog
from dockyard.labels.models import Label, LabelReference
from dockyard.projects.models import Project, ProjectMember, ProjectMetadata
from dockyard.quota.models import Quota
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
from dockyard.remotes.models import RegistryEndpoint
from dockyard.replication.models import ReplicationPolicy
from dockyard.retention.models import RetentionPolicy
from dockyard.robots.models import Robot, RobotPermission
from dockyard.system.models import Property
from dockyard.webhooks.models import WebhookPolicy

__all__ = [
    "Artifact",
    "ArtifactAccessory",
    "ArtifactBlob",
    "ArtifactReference",
    "AuditLog",
    "Base",
    "Blob",
    "BlobUpload",
    "Execution",
    "ImmutableTagRule",
    "JobQueue",
    "JobWorker",
    "Label",
    "LabelReference",
    "LoginSession",
    "Project",
    "ProjectBlob",
    "ProjectMember",
    "ProjectMetadata",
    "Property",
    "Quota",
    "RegistryEndpoint",
    "ReplicationPolicy",
    "Repository",
    "RepositoryBlob",
    "RetentionPolicy",
    "Robot",
    "RobotPermission",
    "Schedule",
    "Tag",
    "Task",
    "TaskLog",
    "User",
    "UserGroup",
    "UserGroupMembership",
    "WebhookPolicy",
]
