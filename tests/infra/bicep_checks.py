"""A small structural reader for the Bicep in infra/, and the consistency checks built on it.

Bicep cannot be compiled on these machines, so the tests read the text: comments are
stripped (string-aware), blocks are cut out by balanced brackets, and object literals are
split into their top-level `key: value` entries. It understands the subset of Bicep that
infra/ uses; a construct it cannot read makes a check report a problem, never pass silently.

Every `check_*` function returns a list of problems (empty = fine), so tests can show that a
mutated template IS reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"

# Built-in Azure role definition ids the host and the app need on the storage account.
STORAGE_ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
}

# Settings the platform or the template owns (not in shared/settings.py).
INFRA_SETTING_PREFIXES = ("AzureWebJobsStorage__", "APPLICATIONINSIGHTS_", "RESPONDER_EVENTHUB")

# Settings that Flex Consumption rejects or that would bring a key-based connection back.
FORBIDDEN_SETTINGS = (
    "AzureWebJobsStorage",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "RESPONDER_STATIC_TOKEN",
)

SECRET_PATTERNS = {
    "AccountKey=": re.compile(r"AccountKey\s*=", re.IGNORECASE),
    "listKeys(": re.compile(r"\blistKeys\s*\(", re.IGNORECASE),
    "listAccountSas(": re.compile(r"\blistAccountSas\s*\(", re.IGNORECASE),
    "listServiceSas(": re.compile(r"\blistServiceSas\s*\(", re.IGNORECASE),
    "DefaultEndpointsProtocol=": re.compile(r"DefaultEndpointsProtocol\s*=", re.IGNORECASE),
    "SharedAccessKey=": re.compile(r"SharedAccessKey\s*=", re.IGNORECASE),
    "primaryKey": re.compile(r"\bprimaryKey\b", re.IGNORECASE),
}


# ------------------------------------------------------------------------------ reading


def strip_comments(text: str) -> str:
    """Remove // and /* */ comments, keeping strings ('...', '''...''') and line numbers."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(text[i:end])
            i = end
        elif text[i] == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


_OPEN = {"{": "}", "[": "]", "(": ")"}


def balanced(text: str, start: int) -> str:
    """The bracketed block that opens at text[start] (one of { [ ( ), brackets included."""
    opener = text[start]
    if opener not in _OPEN:
        raise ValueError(f"no block opens at {start}: {text[start:start + 20]!r}")
    stack: list[str] = []
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c in _OPEN:
            stack.append(_OPEN[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return text[start:i + 1]
        i += 1
    raise ValueError(f"unbalanced block from {start}")


def block_after(text: str, pattern: str, openers: str = "{[") -> str | None:
    """The first block opened by one of `openers` after the first match of `pattern`."""
    m = re.search(pattern, text, re.MULTILINE)
    if not m:
        return None
    starts = [p for p in (text.find(o, m.end()) for o in openers) if p >= 0]
    return balanced(text, min(starts)) if starts else None


def object_entries(block: str) -> dict[str, str]:
    """Top-level `key: value` entries of an object literal `{ ... }` (value as raw text)."""
    if not block.startswith("{"):
        raise ValueError("not an object literal")
    inner = block[1:-1]
    entries: dict[str, str] = {}
    depth, i, n, line_start = 0, 0, len(inner), 0
    lines: list[str] = []
    while i < n:
        c = inner[i]
        if c == "'":
            j = i + 1
            while j < n and inner[j] != "'":
                j += 2 if inner[j] == "\\" else 1
            i = j + 1
            continue
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        elif c == "\n" and depth == 0:
            lines.append(inner[line_start:i])
            line_start = i + 1
        i += 1
    lines.append(inner[line_start:])
    for raw in lines:
        entry = raw.strip()
        if not entry:
            continue
        m = re.match(r"^('(?:[^'\\]|\\.)*'|[A-Za-z_][\w]*)\s*:\s*(.*)$", entry, re.DOTALL)
        if not m:
            raise ValueError(f"cannot read object entry {entry[:60]!r}")
        key = m.group(1).strip("'")
        entries[key] = m.group(2).strip()
    return entries


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: str


_RESOURCE = re.compile(
    r"^\s*resource\s+(\w+)\s+'([^'@]+)@([^']+)'\s*(existing\s*)?=", re.MULTILINE)


def resources(text: str) -> list[Resource]:
    """Every `resource` declaration (comments stripped), with its body ({...} or [for ...])."""
    text = strip_comments(text)
    found: list[Resource] = []
    for m in _RESOURCE.finditer(text):
        starts = [p for p in (text.find("{", m.end()), text.find("[", m.end())) if p >= 0]
        body = balanced(text, min(starts))
        found.append(Resource(m.group(1), m.group(2), m.group(3), bool(m.group(4)), body))
    return found


def params(text: str) -> dict[str, str]:
    """`param name type [= default]` declarations: name -> the rest of the line."""
    text = strip_comments(text)
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\s*param\s+(\w+)\s+(.*)$", text, re.MULTILINE)}


def string_value(raw: str) -> str | None:
    """The literal of a plain single-quoted string without interpolation, else None."""
    m = re.fullmatch(r"'((?:[^'\\$]|\\.)*)'", raw.strip())
    return m.group(1) if m else None


def read_infra(infra: Path = INFRA) -> dict[str, str]:
    """Every Bicep/JSON/YAML file under infra/ (plus azure.yaml), by path relative to repo."""
    root = infra.parent
    files = {str(p.relative_to(root)): p.read_text(encoding="utf-8")
             for p in sorted(infra.rglob("*"))
             if p.is_file() and p.suffix in {".bicep", ".json", ".yaml", ".yml", ".bicepparam"}}
    azure_yaml = root / "azure.yaml"
    if azure_yaml.exists():
        files["azure.yaml"] = azure_yaml.read_text(encoding="utf-8")
    return files


def app_settings(main_text: str) -> dict[str, str]:
    """The `var appSettings = { ... }` object of main.bicep: setting name -> raw value."""
    block = block_after(strip_comments(main_text), r"^\s*var\s+appSettings\s*=")
    if block is None:
        raise ValueError("main.bicep has no `var appSettings = {...}`")
    return object_entries(block)


# ------------------------------------------------------------------------------- checks


def check_app_settings(settings: Mapping[str, str], contract: Iterable[object],
                       extra: Iterable[object] = ()) -> list[str]:
    """Every contract setting is set (identity-based for storage), nothing unknown or keyed.

    `contract` and `extra` are SettingSpec-like objects with a `.name`.
    """
    problems: list[str] = []
    contract_names = [s.name for s in contract]  # type: ignore[attr-defined]
    known = set(contract_names) | {s.name for s in extra}  # type: ignore[attr-defined]
    for name in contract_names:
        if name == "AzureWebJobsStorage":
            for suffix in ("accountName", "credential", "clientId"):
                if f"AzureWebJobsStorage__{suffix}" not in settings:
                    problems.append(f"AzureWebJobsStorage__{suffix} is not set "
                                    "(storage must be identity-based)")
            cred = settings.get("AzureWebJobsStorage__credential")
            if cred is not None and string_value(cred) != "managedidentity":
                problems.append("AzureWebJobsStorage__credential must be 'managedidentity'")
        elif name == "RESPONDER_STATIC_TOKEN":
            continue  # must NOT be set: FORBIDDEN_SETTINGS below
        elif name not in settings:
            problems.append(f"app setting {name} (shared/settings.py APP_SETTINGS) is not set")
    for name in FORBIDDEN_SETTINGS:
        if name in settings:
            problems.append(f"app setting {name} must not be set in Azure")
    for name in settings:
        if name not in known and not name.startswith(INFRA_SETTING_PREFIXES):
            problems.append(f"app setting {name} is not a known setting (misspelled?)")
    if "RESPONDER_CREDENTIAL" in settings and \
            string_value(settings["RESPONDER_CREDENTIAL"]) != "managed-identity":
        problems.append("RESPONDER_CREDENTIAL must be 'managed-identity'")
    for name in ("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId"):
        if name in settings and "clientId" not in settings[name]:
            problems.append(f"{name} must be the user-assigned identity's clientId")
    return problems


def check_no_storage_secrets(files: Mapping[str, str]) -> list[str]:
    """No account keys, SAS, or connection strings anywhere (Application Insights excepted)."""
    problems: list[str] = []
    for path, text in files.items():
        code = strip_comments(text) if path.endswith(".bicep") else text
        for label, pattern in SECRET_PATTERNS.items():
            if pattern.search(code):
                problems.append(f"{path}: {label} (keys are not allowed; use the identity)")
        for lineno, line in enumerate(code.splitlines(), 1):
            if re.search(r"connection_?string", line, re.IGNORECASE) and not re.search(
                    r"applicationinsights|appInsights", line, re.IGNORECASE):
                problems.append(f"{path}:{lineno}: connection string outside Application "
                                f"Insights: {line.strip()[:80]}")
    return problems


def _resource(found: list[Resource], rtype: str) -> Resource | None:
    return next((r for r in found if r.type.lower() == rtype.lower() and not r.existing), None)


def check_flex_python(function_app_text: str) -> list[str]:
    """Flex Consumption (FC1), Linux, Python 3.11, package pulled with the user identity."""
    problems: list[str] = []
    found = resources(function_app_text)
    plan = _resource(found, "Microsoft.Web/serverfarms")
    site = _resource(found, "Microsoft.Web/sites")
    if plan is None or site is None:
        return ["function app module must declare a Microsoft.Web/serverfarms plan and site"]
    if not re.search(r"\bname:\s*'FC1'", plan.body):
        problems.append("plan sku must be FC1 (Flex Consumption)")
    if not re.search(r"\btier:\s*'FlexConsumption'", plan.body):
        problems.append("plan tier must be FlexConsumption")
    if not re.search(r"\bkind:\s*'functionapp,linux'", site.body):
        problems.append("site kind must be 'functionapp,linux'")
    config = block_after(site.body, r"\bfunctionAppConfig\s*:")
    if config is None:
        return [*problems, "site has no functionAppConfig"]
    runtime = block_after(config, r"\bruntime\s*:")
    entries = object_entries(runtime) if runtime else {}
    if string_value(entries.get("name", "")) != "python":
        problems.append("functionAppConfig.runtime.name must be 'python'")
    if string_value(entries.get("version", "")) != "3.11":
        problems.append("functionAppConfig.runtime.version must be '3.11'")
    auth = block_after(config, r"\bauthentication\s*:")
    if auth is None or string_value(object_entries(auth).get("type", "")) != \
            "UserAssignedIdentity":
        problems.append("deployment storage must authenticate with the UserAssignedIdentity")
    if not re.search(r"\bhttpsOnly:\s*true", site.body):
        problems.append("site must be httpsOnly")
    return problems


def check_user_assigned_identity(main_text: str, function_app_text: str) -> list[str]:
    """A user-assigned identity exists and is the site's only identity."""
    problems: list[str] = []
    if _resource(resources(main_text),
                 "Microsoft.ManagedIdentity/userAssignedIdentities") is None:
        problems.append("main.bicep must create a user-assigned managed identity")
    site = _resource(resources(function_app_text), "Microsoft.Web/sites")
    identity = block_after(site.body, r"\bidentity\s*:") if site else None
    entries = object_entries(identity) if identity else {}
    if string_value(entries.get("type", "")) != "UserAssigned":
        problems.append("site identity type must be 'UserAssigned' (and only that)")
    return problems


def check_storage(storage_text: str) -> list[str]:
    """Hardened account and the identity's three data roles, assigned on the account."""
    problems: list[str] = []
    found = resources(storage_text)
    account = _resource(found, "Microsoft.Storage/storageAccounts")
    if account is None:
        return ["storage module must declare a storage account"]
    required = {
        "allowSharedKeyAccess": "false",
        "allowBlobPublicAccess": "false",
        "supportsHttpsTrafficOnly": "true",
        "minimumTlsVersion": "'TLS1_2'",
    }
    props = object_entries(block_after(account.body, r"\bproperties\s*:") or "{}")
    for key, value in required.items():
        if props.get(key) != value:
            problems.append(f"storage account {key} must be {value}, got {props.get(key)!r}")
    code = strip_comments(storage_text)
    roles_var = block_after(code, r"^\s*var\s+identityRoles\s*=")
    assigned = roles_var or ""
    roles = object_entries(block_after(code, r"^\s*var\s+roles\s*=") or "{}")
    for name, role_id in STORAGE_ROLES.items():
        symbols = [k for k, v in roles.items() if string_value(v) == role_id]
        if not any(re.search(rf"\broles\.{s}\b", assigned) for s in symbols) \
                and role_id not in assigned:
            problems.append(f"{name} ({role_id}) is not assigned to the identity")
    assignment = next((r for r in found
                       if r.type == "Microsoft.Authorization/roleAssignments"
                       and re.search(r"for\s+\w+\s+in\s+identityRoles\b", r.body)), None)
    if assignment is None:
        problems.append("no role assignment loop over identityRoles")
    elif not re.search(r"\bscope:\s*account\b", assignment.body) or \
            "identityPrincipalId" not in assignment.body:
        problems.append("identity role assignments must target the account and the identity")
    return problems


_PERMISSION_LITERAL = re.compile(r"'([A-Z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+)'")


def check_graph_module(module_text: str, graph_app_id: str, exchange_app_id: str) -> list[str]:
    """The module takes its permission names from permissions.json, not from a list here."""
    problems: list[str] = []
    code = strip_comments(module_text)
    if not re.search(r"^\s*extension\s+microsoftGraphV1\b", code, re.MULTILINE):
        problems.append("graph-permissions.bicep must use `extension microsoftGraphV1`")
    if not re.search(r"loadJsonContent\(\s*'\.\./permissions\.json'\s*\)", code):
        problems.append("graph-permissions.bicep must loadJsonContent('../permissions.json')")
    literals = sorted(set(_PERMISSION_LITERAL.findall(code)))
    if literals:
        problems.append(f"graph-permissions.bicep hard-codes permission names: {literals}")
    found = resources(module_text)
    sps = {r.symbol: r for r in found
           if r.type == "Microsoft.Graph/servicePrincipals" and r.existing}
    by_app = {}
    for symbol, sp in sps.items():
        app_id = string_value(object_entries(sp.body).get("appId", ""))
        by_app[app_id] = symbol
    for app_id, label in ((graph_app_id, "Microsoft Graph"),
                          (exchange_app_id, "Office 365 Exchange Online")):
        if app_id not in by_app:
            problems.append(f"no existing servicePrincipals lookup of {label} ({app_id})")
    assignments = [r for r in found if r.type == "Microsoft.Graph/appRoleAssignedTo"]
    for key, app_id in (("graphApplicationPermissions", graph_app_id),
                        ("exchangeApplicationPermissions", exchange_app_id)):
        var = re.search(rf"^\s*var\s+(\w+)\s*=\s*\w+\.{key}\s*$", code, re.MULTILINE)
        sp_symbol = by_app.get(app_id)
        match = var and sp_symbol and next(
            (a for a in assignments
             if re.search(rf"for\s+(\w+)\s+in\s+{var.group(1)}\s*:", a.body)
             and re.search(rf"\bresourceId:\s*{sp_symbol}\.id\b", a.body)
             and re.search(rf"{sp_symbol}\.appRoles\b.*\.value\s*==", a.body)), None)
        if not match:
            problems.append(f"no appRoleAssignedTo@v1.0 loop over permissions.{key} that "
                            "finds each app role by value on the resource service principal")
    return problems


def check_skip_comments(files: Mapping[str, str]) -> list[str]:
    """Every `checkov:skip` names a check and gives a real reason."""
    problems: list[str] = []
    for path, text in files.items():
        for m in re.finditer(r"checkov:skip=([^\n]*)", text):
            skip = re.fullmatch(r"(CKV2?_[A-Z]+_\d+)\s*:\s*(.{20,})", m.group(1).strip())
            if not skip:
                problems.append(f"{path}: skip without a check id and reason: {m.group(0)}")
    return problems


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
