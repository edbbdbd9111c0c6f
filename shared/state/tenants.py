"""The tenant registry: which tenants one deployment protects, one Table row each.

Partition `tenants`, row key = the tenant id (lower case). A verified domain is never a key:
domains are only a way to route an alert that names a UPN. The table is shared by every
instance; reads are cached per process for `CACHE_SECONDS`, so a storm of messages for
other tenants costs one query a minute, not one per message. A missing table is an empty
registry: a single-tenant deployment has none and never needs one.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.settings import tenant_domain, tenant_guid
from shared.state.storage import Storage

PARTITION = "tenants"
CACHE_SECONDS = 60.0
MISS_REFRESH_SECONDS = 5.0
"""A lookup that misses re-reads the table at most this often, so a tenant added a moment
ago is found soon, and a flood of messages for unknown tenants costs little."""
MAX_POLICY_CHARS = 30_000
"""An inline policy is kept in one Table property (64 KiB, UTF-16: 32K characters)."""
ConsentStatus = Literal["unknown", "ok", "withdrawn"]
_JSON_FIELDS = ("domains", "policy", "exclusions", "notify", "features")


class TenantRecord(BaseModel):
    """One protected tenant and what is particular to it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    tenant_id: str = Field(alias="tenantId")
    display_name: str = Field("", alias="displayName", max_length=256)
    domains: list[str] = Field(default_factory=list)
    """Accepted domains (lower case): route alerts that carry only a UPN."""
    policy: str | dict[str, Any] | None = None
    """A policy file under the app (`policies/msp.json`), an inline policy, or None: the
    app's own policy."""
    exclusions: list[str] = Field(default_factory=list)
    """UPNs or object ids never touched, added to the policy's exclusions."""
    notify: list[str] = Field(default_factory=list)
    """Notification targets: an https webhook URL and/or a mailbox address."""
    features: list[str] = Field(default_factory=list)
    """Enabled step and sweep names; empty: all that the policy enables."""
    enabled: bool = True
    added_at: datetime | None = Field(None, alias="addedAt")
    consent_checked_at: datetime | None = Field(None, alias="consentCheckedAt")
    consent_status: ConsentStatus = Field("unknown", alias="consentStatus")
    last_error: str | None = Field(None, alias="lastError", max_length=4000)

    @field_validator("tenant_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        guid = tenant_guid(value)
        if guid is None:
            raise ValueError("tenantId must be the tenant's id (a GUID)")
        return guid

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for item in value:
            domain = tenant_domain(item)
            if domain is None:
                raise ValueError(f"not a domain name: {item[:80]!r}")
            if domain not in out:
                out.append(domain)
        return out

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str):
            path = value.strip().replace("\\", "/")
            if (not path or path.startswith("/") or ":" in path
                    or ".." in path.split("/") or not path.endswith(".json")):
                raise ValueError("policy must be a .json path under the app "
                                 "(like policies/msp.json) or a policy object")
            return path
        if isinstance(value, dict) and len(json.dumps(value)) > MAX_POLICY_CHARS:
            raise ValueError(f"an inline policy is limited to {MAX_POLICY_CHARS} characters")
        return value

    @field_validator("exclusions", "features")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        out = [v.strip() for v in value if v.strip()]
        if any(len(v) > 1024 or any(ord(c) < 0x20 for c in v) for v in out):
            raise ValueError("names must be short and printable")
        return list(dict.fromkeys(out))

    @field_validator("notify")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        out = [v.strip() for v in value if v.strip()]
        urls = [v for v in out if v.lower().startswith("https://")]
        mailboxes = [v for v in out if v not in urls]
        if any("@" not in m or " " in m or "/" in m for m in mailboxes):
            raise ValueError("notify takes https webhook URLs and mailbox addresses")
        if len(urls) > 1 or len(mailboxes) > 1:
            raise ValueError("notify takes at most one webhook URL and one mailbox (the "
                             "policy's notify.webhookUrl and notify.socMailbox)")
        return out

    def to_entity(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, exclude={"tenant_id"})
        entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": self.tenant_id,
                                  "tenantId": self.tenant_id}
        for key, value in data.items():
            if key in _JSON_FIELDS:
                entity[key] = json.dumps(value)
            elif value is not None:
                entity[key] = value
        return entity

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> TenantRecord:
        data = {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}
        for key in _JSON_FIELDS:
            if isinstance(data.get(key), str):
                data[key] = json.loads(data[key])
        data["tenantId"] = entity.get("RowKey", data.get("tenantId"))
        return cls.model_validate(data)


class TenantRegistry:
    """Reads and writes the registry table; reads come from a per-process snapshot."""

    def __init__(self, storage: Storage, table: str) -> None:
        self._storage = storage
        self._table_name = table
        self._snapshot: list[TenantRecord] | None = None
        self._read_at = 0.0
        self.reads = 0
        """Table queries made (tests prove the cache with it)."""

    @property
    def table_name(self) -> str:
        return self._table_name

    def _client(self) -> Any:
        return self._storage.tables.get_table_client(self._table_name)

    def invalidate(self) -> None:
        self._snapshot = None

    async def ensure(self) -> None:
        try:
            await self._storage.tables.create_table(self._table_name)
        except ResourceExistsError:
            pass

    async def add(self, record: TenantRecord) -> TenantRecord:
        """Insert or replace the tenant's row (its addedAt is kept from the first add)."""
        await self.ensure()
        existing = await self._read_one(record.tenant_id)
        added = (existing.added_at if existing and existing.added_at
                 else record.added_at or datetime.now(UTC))
        record = record.model_copy(update={"added_at": added})
        await self._client().upsert_entity(record.to_entity(), mode=UpdateMode.REPLACE)
        self.invalidate()
        return record

    async def _read_one(self, tenant_id: str) -> TenantRecord | None:
        try:
            entity = await self._client().get_entity(PARTITION, tenant_id)
        except ResourceNotFoundError:  # no such row, or no table yet
            return None
        return TenantRecord.from_entity(dict(entity))

    async def _load(self, *, miss: bool = False) -> list[TenantRecord]:
        age = time.monotonic() - self._read_at
        fresh = age < (MISS_REFRESH_SECONDS if miss else CACHE_SECONDS)
        if self._snapshot is not None and fresh:
            return self._snapshot
        self.reads += 1
        rows = self._client().query_entities("PartitionKey eq @pk",
                                             parameters={"pk": PARTITION})
        try:
            records = [TenantRecord.from_entity(dict(e)) async for e in rows]
        except ResourceNotFoundError:
            records = []  # no registry table: a single-tenant deployment
        self._snapshot, self._read_at = records, time.monotonic()
        return records

    async def list(self) -> list[TenantRecord]:
        """Every registered tenant, in row-key order."""
        return list(await self._load())

    async def get(self, tenant_id: str) -> TenantRecord | None:
        guid = tenant_guid(tenant_id)
        if guid is None:
            return None
        found = _by_id(await self._load(), guid)
        if found is None:  # maybe added since the snapshot
            found = _by_id(await self._load(miss=True), guid)
        return found

    async def by_domain(self, domain: str) -> TenantRecord | None:
        """The tenant that lists `domain` among its accepted domains."""
        name = tenant_domain(domain)
        if name is None:
            return None
        found = _by_domain(await self._load(), name)
        if found is None:
            found = _by_domain(await self._load(miss=True), name)
        return found

    async def remove(self, tenant_id: str) -> bool:
        """Delete the tenant's row; False when it was not registered."""
        guid = tenant_guid(tenant_id)
        if guid is None or await self._read_one(guid) is None:
            return False
        await self._client().delete_entity(PARTITION, guid)
        self.invalidate()
        return True

    async def set_status(self, tenant_id: str, *, consent_status: ConsentStatus | None = None,
                         last_error: str | None = None, enabled: bool | None = None,
                         checked_at: datetime | None = None) -> TenantRecord | None:
        """Record what a consent check (or an operator) found; None when not registered."""
        guid = tenant_guid(tenant_id)
        current = await self._read_one(guid) if guid else None
        if current is None:
            return None
        update: dict[str, Any] = {"last_error": (last_error or None) and last_error[:4000]}
        if consent_status is not None:
            update["consent_status"] = consent_status
            update["consent_checked_at"] = checked_at or datetime.now(UTC)
        if enabled is not None:
            update["enabled"] = enabled
        record = current.model_copy(update=update)
        await self._client().upsert_entity(record.to_entity(), mode=UpdateMode.REPLACE)
        self.invalidate()
        return record


def _by_id(records: list[TenantRecord], guid: str) -> TenantRecord | None:
    return next((r for r in records if r.tenant_id == guid), None)


def _by_domain(records: list[TenantRecord], domain: str) -> TenantRecord | None:
    return next((r for r in records if domain in r.domains), None)
