"""The built-in scanner's package inventory: what an image's layers say is installed.

No I/O of its own beyond the layer readers it is given and a temporary file for the archives
it must open (Java archives, rpmdb.sqlite); see docs/scanning.md for what it finds.
"""

from .cyclonedx import cyclonedx_json
from .model import Inventory, OSRelease, Package, purl
from .scanner import Limits, ainventory_layers, inventory_layers
from .spdx import spdx_json
from .tarstream import LayerError

__all__ = [
    "Inventory",
    "LayerError",
    "Limits",
    "OSRelease",
    "Package",
    "ainventory_layers",
    "cyclonedx_json",
    "inventory_layers",
    "purl",
    "spdx_json",
]
