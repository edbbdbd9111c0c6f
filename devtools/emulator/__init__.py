"""A stateful Microsoft Graph + Exchange Online admin REST emulator for local tests.

See devtools/tenants/README.md for the seed format and the control API."""

from .generate import make_tenant
from .pipeline import Emulator
from .server import EmulatorServer
from .tenant import Tenant, load_tenant

__all__ = ["Emulator", "EmulatorServer", "Tenant", "load_tenant", "make_tenant"]
