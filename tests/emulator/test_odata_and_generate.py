"""Unit tests for the $filter and OPATH parsers, and the synthetic tenant generator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.emulator import Tenant, make_tenant
from devtools.emulator.odata import FilterError, compile_filter
from devtools.emulator.opath import OpathError, compile_opath


def odata_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_quoted_literals_round_trip(value):
    pred = compile_filter(f"userPrincipalName eq {odata_quote(value)}", ["userPrincipalName"])
    assert pred({"userPrincipalName": value})
    assert not pred({"userPrincipalName": value + "x"})


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_never_crashes(text):
    try:
        pred = compile_filter(text, ["userPrincipalName", "accountEnabled"])
        pred({"userPrincipalName": "a", "accountEnabled": True})
    except FilterError:
        pass


@pytest.mark.parametrize(("expr", "item", "expected"), [
    ("riskLevel eq 'high' and riskState eq 'atRisk'", {"riskLevel": "high",
                                                       "riskState": "atRisk"}, True),
    ("riskLevel eq 'HIGH'", {"riskLevel": "high"}, True),
    ("detectedDateTime gt 2026-11-25T03:12:44Z",
     {"detectedDateTime": "2026-11-25T03:12:44.1234567Z"}, True),
    ("detectedDateTime le 2026-11-25T03:12:44.1234567Z",
     {"detectedDateTime": "2026-11-25T03:12:44.1234567Z"}, True),
    ("detectedDateTime lt 2026-11-25T03:12:44+01:00",
     {"detectedDateTime": "2026-11-25T03:12:44Z"}, False),
    ("onPremisesSyncEnabled eq null", {"onPremisesSyncEnabled": None}, True),
    ("not (accountEnabled eq true) or id in ('a', 'b')", {"accountEnabled": True, "id": "b"},
     True),
    ("startswith(userPrincipalName, 'MEG')", {"userPrincipalName": "megan@x"}, True),
])
def test_filter_cases(expr, item, expected):
    assert compile_filter(expr)(item) is expected


@pytest.mark.parametrize("expr", ["AuditEnabled -eq", "-eq $true", "(A -eq 1", "A -foo 1"])
def test_opath_errors(expr):
    with pytest.raises(OpathError):
        compile_opath(expr)


def test_opath_cases():
    assert compile_opath("AuditEnabled -eq $false")({"AuditEnabled": False})
    assert compile_opath("auditenabled -eq 'False'")({"AuditEnabled": False})
    assert not compile_opath("ForwardingSmtpAddress -ne $null")({"ForwardingSmtpAddress": None})
    assert compile_opath("PrimarySmtpAddress -like '*@contoso.com' -and -not (Name -eq 'x')")(
        {"PrimarySmtpAddress": "a@contoso.com", "Name": "y"})


def test_make_tenant_is_deterministic_and_loads():
    a = make_tenant(300, seed=4)
    assert a == make_tenant(300, seed=4)
    assert a != make_tenant(300, seed=5)
    t = Tenant(a)
    assert len(t.users) == 301
    off = a["offenders"]
    assert len(off["audit_disabled"]) == 5 and len(off["risky_high"]) == 10
    dump = t.dump()
    disabled = {u["userPrincipalName"] for u in dump["users"]
                if u["mailbox"] and not u["mailbox"]["auditEnabled"]}
    assert disabled == set(off["audit_disabled"])
    assert len(dump["riskDetections"]) == 10
    assert make_tenant(10, offenders={"risky_high": 0, "forwarding": 0})["riskyUsers"] == []
