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

# The credential setting: the managed identity itself, or (multiTenant) the multi-tenant app
# registration whose federated credential is that identity (docs/multi-tenant.md).
MULTI_TENANT_CREDENTIAL = "multiTenant ? 'federated-app' : 'managed-identity'"

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
            string_value(settings["RESPONDER_CREDENTIAL"]) != "managed-identity" and \
            settings["RESPONDER_CREDENTIAL"].strip() != MULTI_TENANT_CREDENTIAL:
        problems.append("RESPONDER_CREDENTIAL must be 'managed-identity' (or, only with "
                        f"multiTenant, `{MULTI_TENANT_CREDENTIAL}`)")
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


# --------------------------------------------------------------------- multi-tenant mode

# The token exchange audience of the global Entra service, and the issuer of this tenant's
# managed identity tokens (https://learn.microsoft.com/entra/workload-id/
# workload-identity-federation-config-app-trust-managed-identity).
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
FIC_ISSUER = "'${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'"


def _module_call(main_text: str, path: str) -> list[tuple[str, str, str]]:
    """(symbol, condition, body) of every `module x '<path>' = [if (...)] {...}`."""
    code = strip_comments(main_text)
    calls = []
    for m in re.finditer(rf"^module\s+(\w+)\s+'{re.escape(path)}'\s*=\s*", code, re.MULTILINE):
        rest = code[m.end():]
        condition = ""
        if rest.startswith("if"):
            paren = rest.index("(")
            condition = balanced(rest, paren)[1:-1].strip()
        body = block_after(rest, r"^", openers="{") or ""
        calls.append((m.group(1), condition, body))
    return calls


def check_multi_tenant_main(main_text: str) -> list[str]:
    """multiTenant is off by default, and everything it adds is behind it: the app
    registration module, its consent in this tenant, the credential and client id settings;
    the single-tenant grant to the managed identity is skipped when it is on."""
    problems: list[str] = []
    code = strip_comments(main_text)
    declared = params(main_text)
    if not re.fullmatch(r"bool\s*=\s*false", declared.get("multiTenant", "")):
        problems.append("param multiTenant bool = false is missing (today's deployment must "
                        "stay the default)")
    settings = app_settings(main_text)
    if settings.get("RESPONDER_CREDENTIAL", "").strip() != MULTI_TENANT_CREDENTIAL:
        problems.append(f"RESPONDER_CREDENTIAL must be `{MULTI_TENANT_CREDENTIAL}`")
    var = re.search(r"^var\s+multiTenantAppSettings\s*=\s*multiTenant\s*\?\s*", code,
                    re.MULTILINE)
    extra = block_after(code[var.end():], r"^", openers="{") if var else None
    if not var or extra is None:
        problems.append("var multiTenantAppSettings = multiTenant ? {...} : {} is missing")
    else:
        tail = code[var.end() + len(extra):].lstrip()
        if not tail.startswith(": {}"):
            problems.append("multiTenantAppSettings must be {} when multiTenant is off")
        entries = object_entries(extra)
        if entries.get("RESPONDER_APP_CLIENT_ID") != "responderApp.outputs.appId":
            problems.append("RESPONDER_APP_CLIENT_ID must be the app registration's appId "
                            "(responderApp.outputs.appId)")
        if "AZURE_CLIENT_ID" in entries:
            problems.append("AZURE_CLIENT_ID must stay the managed identity in multiTenant")
    if not re.search(r"appSettings:\s*union\([^)]*\bmultiTenantAppSettings\s*,[^)]*"
                     r"\bappSettings\)", code):
        problems.append("multiTenantAppSettings must reach the site (in the union, before "
                        "appSettings)")
    apps = _module_call(main_text, "modules/responder-app.bicep")
    if len(apps) != 1 or apps[0][0] != "responderApp" or apps[0][1] != "multiTenant":
        problems.append("module responderApp 'modules/responder-app.bicep' = if (multiTenant) "
                        "is missing")
    elif "identityPrincipalId: identity.properties.principalId" not in apps[0][2]:
        problems.append("the app's federated credential must trust the user-assigned identity")
    grants = {symbol: (condition, body) for symbol, condition, body
              in _module_call(main_text, "modules/graph-permissions.bicep")}
    identity_grant = grants.get("graphPermissions")
    if not identity_grant or identity_grant[0] != "grantApiPermissions && !multiTenant":
        problems.append("graphPermissions (to the managed identity) must be "
                        "if (grantApiPermissions && !multiTenant)")
    app_grant = grants.get("appPermissions")
    if not app_grant or app_grant[0] != "grantApiPermissions && multiTenant" or \
            "responderApp.outputs.servicePrincipalId" not in app_grant[1]:
        problems.append("appPermissions must grant permissions.json to the app's service "
                        "principal, if (grantApiPermissions && multiTenant)")
    for symbol, condition, _ in _module_call(main_text, "modules/responder-app.bicep"):
        if "multiTenant" not in condition:
            problems.append(f"module {symbol} is deployed without multiTenant")
    return problems


def _without_nested_resources(body: str) -> str:
    """A resource body with its nested `resource x '...' = {...}` declarations cut out."""
    out = body
    for m in reversed(list(_RESOURCE.finditer(body))):
        start = body.find("{", m.end())
        out = out[:m.start()] + out[start + len(balanced(body, start)):]
    return out


def check_responder_app(module_text: str, graph_app_id: str, exchange_app_id: str) -> list[str]:
    """The app registration is multi-tenant, requests exactly permissions.json (read from the
    file, by app role value, as application permissions) and has one federated credential:
    the managed identity, with the documented issuer, subject and audience."""
    problems: list[str] = []
    code = strip_comments(module_text)
    if not re.search(r"^\s*extension\s+microsoftGraphV1\b", code, re.MULTILINE):
        problems.append("responder-app.bicep must use `extension microsoftGraphV1`")
    if not re.search(r"loadJsonContent\(\s*'\.\./permissions\.json'\s*\)", code):
        problems.append("responder-app.bicep must loadJsonContent('../permissions.json')")
    literals = sorted(set(_PERMISSION_LITERAL.findall(code)))
    if literals:
        problems.append(f"responder-app.bicep hard-codes permission names: {literals}")
    for key in ("graphApplicationPermissions", "exchangeApplicationPermissions"):
        if not re.search(rf"^\s*var\s+\w+\s*=\s*\w+\.{key}\s*$", code, re.MULTILINE):
            problems.append(f"responder-app.bicep must read permissions.{key}")
    found = resources(module_text)
    by_app = {string_value(object_entries(r.body).get("appId", "")): r.symbol
              for r in found if r.type == "Microsoft.Graph/servicePrincipals" and r.existing}
    app = next((r for r in found if r.type == "Microsoft.Graph/applications"
                and not r.existing), None)
    if app is None:
        return [*problems, "responder-app.bicep declares no Microsoft.Graph/applications"]
    entries = object_entries(_without_nested_resources(app.body))
    if string_value(entries.get("signInAudience", "")) != "AzureADMultipleOrgs":
        problems.append("the app registration must be multi-tenant "
                        "(signInAudience 'AzureADMultipleOrgs')")
    if "uniqueName" not in entries:
        problems.append("the app registration needs a uniqueName (its Bicep key)")
    access = entries.get("requiredResourceAccess", "")
    for app_id, label, var in ((graph_app_id, "Microsoft Graph", "requestedGraphPermissions"),
                               (exchange_app_id, "Office 365 Exchange Online",
                                "exchangePermissions")):
        sp = by_app.get(app_id)
        pattern = (rf"resourceAppId:\s*{sp}\.appId\s+resourceAccess:\s*map\(filter\({sp}"
                   rf"\.appRoles,\s*(\w+)\s*=>\s*contains\({var},\s*\1\.value\)\),\s*(\w+)"
                   rf"\s*=>\s*\{{\s*id:\s*\2\.id,\s*type:\s*'Role'\s*\}}\)")
        if sp is None or not re.search(pattern, access):
            problems.append(f"requiredResourceAccess must request the {label} app roles "
                            f"named in permissions.json as application permissions (Role)")
    if not re.search(r"^\s*var\s+requestedGraphPermissions\s*=\s*concat\(graphPermissions,"
                     r"\s*optionalPermissions\)\s*$", code, re.MULTILINE):
        problems.append("requestedGraphPermissions must be graphApplicationPermissions plus "
                        "the optional ones enabled")
    fic = next((r for r in resources(app.body)
                if r.type == "federatedIdentityCredentials"), None)
    if fic is None:
        fic = next((r for r in found
                    if r.type == "Microsoft.Graph/applications/federatedIdentityCredentials"),
                   None)
    if fic is None:
        return [*problems, "the app registration has no federatedIdentityCredentials@v1.0"]
    cred = object_entries(fic.body)
    issuer = cred.get("issuer", "")
    issuer_var = re.search(rf"^\s*var\s+{re.escape(issuer)}\s*=\s*(.+)$", code, re.MULTILINE)
    if (issuer_var.group(1).strip() if issuer_var else issuer) != FIC_ISSUER:
        problems.append(f"the federated credential's issuer must be {FIC_ISSUER}")
    if cred.get("subject") != "identityPrincipalId":
        problems.append("the federated credential's subject must be the managed identity's "
                        "principal (object) id")
    if re.sub(r"\s+", " ", cred.get("audiences", "")) != f"[ '{TOKEN_EXCHANGE_AUDIENCE}' ]":
        problems.append(f"the federated credential's audience must be "
                        f"{TOKEN_EXCHANGE_AUDIENCE} only")
    if not re.search(r"^\s*name:\s*'\$\{app\.uniqueName\}/[\w-]{3,120}'", fic.body,
                     re.MULTILINE):
        problems.append("the federated credential's name must be '<app uniqueName>/<name>'")
    sp = next((r for r in found if r.type == "Microsoft.Graph/servicePrincipals"
               and not r.existing), None)
    if sp is None or object_entries(sp.body).get("appId") != f"{app.symbol}.appId":
        problems.append("the app registration needs its service principal in this tenant")
    return problems


def check_tenants_table(storage_text: str) -> list[str]:
    """multiTenant only: the registry table, and the operator may write that table alone."""
    problems: list[str] = []
    code = strip_comments(storage_text)
    table = re.search(r"^resource\s+(\w+)\s+'Microsoft\.Storage/storageAccounts/tableServices/"
                      r"tables@[^']+'\s*=\s*if\s*\(multiTenant\)\s*\{[^}]*name:\s*tenantsTable",
                      code, re.MULTILINE)
    if not table:
        problems.append("the tenants table must be created if (multiTenant), named "
                        "tenantsTable")
        return problems
    grant = re.search(r"^resource\s+\w+\s+'Microsoft\.Authorization/roleAssignments@[^']+'\s*="
                      r"\s*if\s*\(multiTenant\s*&&\s*!empty\(operatorPrincipalId\)\)\s*\{",
                      code, re.MULTILINE)
    body = block_after(code[grant.start():], r"^", openers="{") if grant else None
    if not body or not re.search(rf"\bscope:\s*{table.group(1)}\b", body) or \
            "roles.tableDataContributor" not in body:
        problems.append("the operator's write access must be Table Data Contributor scoped "
                        "to the tenants table, if (multiTenant && operator)")
    return problems
