"""Who a POST /sync is for: the trust decision on the UI's delegation headers (``reconciler.delegation``)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.delegation import (
    AUDIENCE,
    GROUPS_HEADER,
    USER_HEADER,
    Caller,
    Refused,
    account_user,
    audience_refusal,
    caller_of,
    delegation_headers,
    parse_account,
    review_audiences,
)

UI = "driftguard-system/driftguard-ui"
UI_USER = "system:serviceaccount:driftguard-system:driftguard-ui"
ALICE_TOKEN = {"username": "alice", "groups": ["dev", "system:authenticated"], "uid": "u-1", "extra": {"k": ["v"]}}
UI_TOKEN = {"username": UI_USER, "groups": ["system:serviceaccounts"], "extra": {"pod": ["ui-0"]}}
U, G = USER_HEADER.lower(), GROUPS_HEADER.lower()


@pytest.mark.parametrize(("authenticated", "headers", "trusted", "expected"), [
    # no delegation headers: the caller itself, uid and extra kept for the SubjectAccessReview
    (ALICE_TOKEN, {}, UI, Caller("alice", ("dev", "system:authenticated"), "u-1", {"k": ["v"]})),
    (ALICE_TOKEN, {}, "", Caller("alice", ("dev", "system:authenticated"), "u-1", {"k": ["v"]})),
    (ALICE_TOKEN, {U: [], G: []}, UI, Caller("alice", ("dev", "system:authenticated"), "u-1", {"k": ["v"]})),
    # the UI's own token without headers is just the UI: RBAC is asked about it (it has no sync)
    (UI_TOKEN, {}, UI, Caller(UI_USER, ("system:serviceaccounts",), "", {"pod": ["ui-0"]})),
    # the UI naming its user: that user and groups, never the UI's uid or extra; recorded "via"
    (UI_TOKEN, {U: ["bob"], G: ["ops, system:authenticated"]}, UI,
     Caller("bob", ("ops", "system:authenticated"), via="driftguard-ui")),
    (UI_TOKEN, {U: [" bob "]}, UI, Caller("bob", (), via="driftguard-ui")),
    (UI_TOKEN, {U: ["bob"], G: [""]}, UI, Caller("bob", (), via="driftguard-ui")),
])
def test_who_the_sync_is_for(authenticated: dict[str, Any], headers: dict[str, list[str]], trusted: str,
                             expected: Caller) -> None:
    assert caller_of(authenticated, headers, trusted) == expected


@pytest.mark.parametrize(("authenticated", "headers", "trusted", "status", "says"), [
    # forged: a caller that is not the UI's ServiceAccount naming someone else
    (ALICE_TOKEN, {U: ["cluster-admin"]}, UI, 403, f"alice sent {USER_HEADER}, which only the web UI's "
                                                   f"ServiceAccount {UI} may send"),
    (ALICE_TOKEN, {G: ["system:masters"]}, UI, 403, "only the web UI's ServiceAccount"),
    # another ServiceAccount of the same name in another namespace is another ServiceAccount
    ({"username": "system:serviceaccount:evil:driftguard-ui"}, {U: ["bob"]}, UI, 403,
     "system:serviceaccount:evil:driftguard-ui sent"),
    # no UI trusted: even the UI's ServiceAccount may not delegate
    (UI_TOKEN, {U: ["bob"]}, "", 403, "--ui-service-account is unset"),
    # trusted, but the headers are not one clear user
    (UI_TOKEN, {U: ["bob", "carol"]}, UI, 400, "exactly one"),
    (UI_TOKEN, {U: ["bob"], G: ["a", "b"]}, UI, 400, "at most one"),
    (UI_TOKEN, {U: ["  "]}, UI, 400, "the user name is empty"),
    (UI_TOKEN, {G: ["ops"]}, UI, 400, "exactly one"),
    (UI_TOKEN, {U: ["bob\x00root"]}, UI, 400, "control character"),
    (UI_TOKEN, {U: ["x" * 600]}, UI, 400, "longer than"),
    (UI_TOKEN, {U: ["bob"], G: [",".join(f"g{i}" for i in range(101))]}, UI, 400, "more than 100 groups"),
])
def test_refused_delegations(authenticated: dict[str, Any], headers: dict[str, list[str]], trusted: str,
                             status: int, says: str) -> None:
    with pytest.raises(Refused) as refused:
        caller_of(authenticated, headers, trusted)
    assert refused.value.status == status and says in str(refused.value)


@pytest.mark.parametrize(("caller", "initiator", "spec"), [
    (Caller("alice", ("dev",), "u-1", {"k": ["v"]}), "alice",
     {"user": "alice", "groups": ["dev"], "uid": "u-1", "extra": {"k": ["v"]}}),
    (Caller("bob", ("ops",), via="driftguard-ui"), "bob via driftguard-ui", {"user": "bob", "groups": ["ops"]}),
])
def test_recorded_and_reviewed_as(caller: Caller, initiator: str, spec: dict[str, Any]) -> None:
    assert caller.initiator == initiator and caller.review_spec() == spec


@pytest.mark.parametrize(("text", "account"), [
    (UI, ("driftguard-system", "driftguard-ui")), (" team/ui ", ("team", "ui")),
])
def test_accounts(text: str, account: tuple[str, str]) -> None:
    assert parse_account(text) == account
    assert account_user(text) == f"system:serviceaccount:{account[0]}:{account[1]}"


@pytest.mark.parametrize("text", ["driftguard-ui", "/ui", "ns/", "a/b/c", "system:serviceaccount:a:b", ""])
def test_bad_accounts_name_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        parse_account(text)


def test_the_ui_sends_what_the_reconciler_reads_back() -> None:
    headers = delegation_headers("zoë@example.org", ("dev", "system:authenticated"))
    assert headers == {USER_HEADER: "zoë@example.org", GROUPS_HEADER: "dev,system:authenticated"}
    read = caller_of(UI_TOKEN, {k.lower(): [v] for k, v in headers.items()}, UI)
    assert (read.user, read.groups) == ("zoë@example.org", ("dev", "system:authenticated"))


@pytest.mark.parametrize(("user", "groups", "says"), [
    ("bob", ("a,b",), "contains a comma"), ("", (), "empty"), ("bob\n", (), "control character"),
    ("名前", (), "Latin-1"),
])
def test_names_the_ui_cannot_carry(user: str, groups: tuple[str, ...], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        delegation_headers(user, groups)


FOR_US = {"authenticated": True, "user": UI_TOKEN, "audiences": [AUDIENCE]}
PLAIN_REFUSED = {"authenticated": False, "error": "[invalid bearer token, token audiences [\"https://kubernetes."
                 "default.svc\"] is invalid for the target audiences [\"driftguard-reconciler\"]]"}


@pytest.mark.parametrize(("headers", "audiences"), [
    ({}, []),  # the caller's own token: the API server's audiences, as before
    ({U: [], G: []}, []),
    ({U: ["bob"]}, [AUDIENCE]),  # a delegation: the reconciler's audience only
    ({G: ["ops"]}, [AUDIENCE]),  # groups alone still claim a delegation (refused later, but for this audience)
])
def test_which_audience_the_token_review_asks_for(headers: dict[str, list[str]], audiences: list[str]) -> None:
    assert review_audiences(headers) == audiences


@pytest.mark.parametrize(("status", "headers", "says"), [
    # not delegated: whatever the review says is for the usual checks (401 when unauthenticated)
    ({"authenticated": False}, {}, None),
    ({"authenticated": True, "user": ALICE_TOKEN}, {}, None),
    # delegated with the UI's token for the reconciler: accepted
    (FOR_US, {U: ["bob"]}, None),
    ({**FOR_US, "audiences": ["other", AUDIENCE]}, {U: ["bob"]}, None),
    # delegated with an API-server token: the API server refuses it for this audience; the answer says which token
    (PLAIN_REFUSED, {U: ["bob"]}, "token audiences [\"https://kubernetes.default.svc\"] is invalid"),
    ({"authenticated": False}, {U: ["bob"]}, "this token is not one: the web UI sends the token in its "
                                             "--reconciler-token-file"),
    # authenticated, but the status does not list the audience (an authenticator that ignored it): refused
    ({**FOR_US, "audiences": []}, {U: ["bob"]}, "(its audiences: none)"),
    ({**FOR_US, "audiences": ["https://kubernetes.default.svc"]}, {G: ["ops"]},
     "(its audiences: https://kubernetes.default.svc)"),
    ({"authenticated": True, "user": UI_TOKEN}, {U: ["bob"]}, "(its audiences: none)"),
])
def test_a_delegation_needs_the_token_for_the_reconcilers_audience(
        status: dict[str, Any], headers: dict[str, list[str]], says: str | None) -> None:
    refusal = audience_refusal(status, headers)
    if says is None:
        assert refusal is None
        return
    assert refusal is not None and refusal.status == 401
    assert says in str(refusal)
    assert f"needs a ServiceAccount token for audience {AUDIENCE}" in str(refusal)
    assert "projected serviceAccountToken volume with audience: driftguard-reconciler" in str(refusal)
