"""Generate `infra/permissions.json` from the permissions the code declares.

    python -m devtools.permissions           # write infra/permissions.json
    python -m devtools.permissions --check   # exit 1 and print a diff when it is out of date

The file is the single input of `infra/modules/graph-permissions.bicep` (app role assignments
for the managed identity; `optionalGraphApplicationPermissions` maps a component to the
permissions granted only when its deployment parameter enables it) and of the permission
table in README. It is derived from
`shared.permissions.collect()` / `summary()`: never edit it by hand, declare the permission
beside the code that needs it and run this module again.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from shared import permissions

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "infra" / "permissions.json"

GENERATED_BY = (
    "python -m devtools.permissions (from shared.permissions.collect()); "
    "do not edit by hand: declare permissions beside the code and regenerate"
)


def build() -> dict[str, Any]:
    """The document written to permissions.json: the union of rights plus who needs what."""
    catalogue = permissions.collect()
    union = permissions.summary()
    components = {
        name: {
            "graph": sorted(set(req.graph)),
            "exchange": sorted(set(req.exchange)),
            "roles": sorted(set(req.roles)),
            "why": req.why,
        }
        for name, req in sorted(catalogue.items())
    }
    return {
        "generatedBy": GENERATED_BY,
        "graphResourceAppId": permissions.GRAPH_APP_ID,
        "exchangeResourceAppId": permissions.EXCHANGE_APP_ID,
        "graphApplicationPermissions": union["graphApplicationPermissions"],
        "exchangeApplicationPermissions": union["exchangeApplicationPermissions"],
        "directoryRoles": union["directoryRoles"],
        "components": components,
        # Requested only when the policy enables the component (infra grants them behind a
        # parameter, e.g. enableRoleRemoval; preflight checks them only for enabled steps).
        "optionalGraphApplicationPermissions": permissions.optional_summary(),
    }


def render(document: dict[str, Any] | None = None) -> str:
    """Stable text: two-space indent, key order as built, a final newline."""
    return json.dumps(build() if document is None else document, indent=2,
                      ensure_ascii=False) + "\n"


def diff(current: str, expected: str, path: Path) -> str:
    """Unified diff from the file on disk to what the code declares."""
    return "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            fromfile=f"{path} (on disk)",
            tofile=f"{path} (generated from the code)",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.permissions",
        description="Write infra/permissions.json from the permissions the code declares.",
    )
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 with a diff when the file is out of date")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"path of the generated file (default: {DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)

    expected = render()
    path: Path = args.output
    current = path.read_text(encoding="utf-8") if path.exists() else ""

    if args.check:
        if current == expected:
            print(f"{path} is up to date")
            return 0
        sys.stdout.write(diff(current, expected, path))
        print(f"\n{path} is out of date: run `python -m devtools.permissions`", file=sys.stderr)
        return 1

    if current != expected:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected, encoding="utf-8")
        print(f"wrote {path}")
    else:
        print(f"{path} is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
