"""Blob storage: the driver contract, its drivers and the storage layout.

Drivers are chosen and built in ``create_app``; nothing here is global.
"""

from dockyard.storage.base import Hasher, ObjectInfo, ObjectStore, Storage, UploadStore
from dockyard.storage.filesystem import FilesystemStorage
from dockyard.storage.layout import blob_key, check_key, check_prefix, upload_key

__all__ = [
    "FilesystemStorage",
    "Hasher",
    "ObjectInfo",
    "ObjectStore",
    "Storage",
    "UploadStore",
    "blob_key",
    "check_key",
    "check_prefix",
    "upload_key",
]
