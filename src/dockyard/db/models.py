"""Imports every domain's models so ``Base.metadata`` knows all tables (Alembic, tests)."""

from dockyard.audit.models import AuditLog
from dockyard.db.base import Base
from dockyard.iam.models import (
    LoginSession,
    OidcPending,
    OidcUser,
    User,
    UserGroup,
    UserGroupMembership,
)
from dockyard.immutability.models import ImmutableTagRule
from dockyard.jobs.models import Execution, JobQueue, JobWorker, Schedule, Task, TaskLog
from dockyard.labels.models import Label, LabelReference
from dockyard.projects.models import CVEAllowlistRow, Project, ProjectMember, ProjectMetadata
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
from dockyard.scan.models import (
    ProjectScanner,
    ReportVulnerability,
    ScannerRegistration,
    ScanReport,
    VulnerabilityRecord,
)
from dockyard.scanner.models import AdapterScan, VulnAffected, VulnDbGeneration, VulnRecord
from dockyard.signatures.models import SignatureVerdict, TrustedKey, TrustedKeySet
from dockyard.system.models import Property
from dockyard.webhooks.models import WebhookPolicy

__all__ = [
    "AdapterScan",
    "Artifact",
    "ArtifactAccessory",
    "ArtifactBlob",
    "ArtifactReference",
    "AuditLog",
    "Base",
    "Blob",
    "BlobUpload",
    "CVEAllowlistRow",
    "Execution",
    "ImmutableTagRule",
    "JobQueue",
    "JobWorker",
    "Label",
    "LabelReference",
    "LoginSession",
    "OidcPending",
    "OidcUser",
    "Project",
    "ProjectBlob",
    "ProjectMember",
    "ProjectMetadata",
    "ProjectScanner",
    "Property",
    "Quota",
    "RegistryEndpoint",
    "ReplicationPolicy",
    "ReportVulnerability",
    "Repository",
    "RepositoryBlob",
    "RetentionPolicy",
    "Robot",
    "RobotPermission",
    "ScanReport",
    "ScannerRegistration",
    "Schedule",
    "SignatureVerdict",
    "Tag",
    "Task",
    "TaskLog",
    "TrustedKey",
    "TrustedKeySet",
    "User",
    "UserGroup",
    "UserGroupMembership",
    "VulnAffected",
    "VulnDbGeneration",
    "VulnRecord",
    "VulnerabilityRecord",
    "WebhookPolicy",
]
