"""The audit views return exactly the hand-counted answers for the scenario ledger."""

from __future__ import annotations

import pytest

from audit_pipeline.dataset.build import dataset_path
from audit_pipeline.dataset.query import open_dataset


@pytest.fixture
def con(scenario_dataset):
    connection = open_dataset(dataset_path(scenario_dataset))
    yield connection
    connection.close()


def _only_scenario(rows, column: int = 0):
    """Background traffic has UUID ids; the scenario's ids start with 'ev-'."""
    return [r for r in rows if str(r[column]).startswith("ev-")]


def test_logins_by_user_ip_and_user_agent(con, scenario):
    rows = con.sql(
        "SELECT user_id, ip_address, user_agent, logins, failed_logins FROM logins_by_source "
        "WHERE user_id IN ('U0ALICE', 'U0BOB')"
    ).fetchall()
    got = {(u, ip, ua): (ok, bad) for u, ip, ua, ok, bad in rows}
    assert got == scenario.EXPECTED["logins"]
    per_user = con.sql(
        "SELECT user_id, logins, failed_logins, ip_addresses, user_agents FROM logins_by_user "
        "WHERE user_id IN ('U0ALICE', 'U0BOB') ORDER BY user_id"
    ).fetchall()
    assert per_user == [("U0ALICE", 3, 0, 2, 2), ("U0BOB", 1, 2, 1, 1)]
    reasons = con.sql(
        "SELECT failure_reason FROM login_events WHERE user_id = 'U0BOB' AND NOT succeeded "
        "ORDER BY date_create"
    ).fetchall()
    assert reasons == [("invalid_password",), ("two_factor_failed",)]


def test_admin_changes_by_category(con, scenario):
    rows = _only_scenario(
        con.sql(
            "SELECT event_id, category, previous_value, new_value FROM admin_changes"
        ).fetchall()
    )
    assert {r[0]: r[1] for r in rows} == scenario.EXPECTED["admin"]
    values = {r[0]: (r[2], r[3]) for r in rows}
    assert values["ev-sso-1"] == ('"optional"', '"required"')
    assert values["ev-2fa-1"] == ("false", "true")
    role = con.sql(
        "SELECT actor_user_id, entity_id FROM admin_changes WHERE event_id = 'ev-role-1'"
    ).fetchall()
    assert role == [("U0CAROL", "U0BOB")]
    # Every pref.* action anywhere in the data is in the view.
    missing = con.sql(
        "SELECT count(*) FROM audit_events WHERE action LIKE 'pref.%' "
        "AND event_id NOT IN (SELECT event_id FROM admin_changes)"
    ).fetchall()
    assert missing == [(0,)]


def test_app_installs_and_scope_changes(con, scenario):
    rows = _only_scenario(
        con.sql(
            "SELECT event_id, change, app_id, scopes, new_scopes, previous_scopes FROM app_changes"
        ).fetchall()
    )
    assert {r[0]: r[1] for r in rows} == scenario.EXPECTED["apps"]
    by_id = {r[0]: r for r in rows}
    assert by_id["ev-app-1"][2:4] == ("A01", '["chat:write","commands"]')
    assert by_id["ev-scope-1"][4:] == ('["chat:write","files:read"]', '["chat:write"]')


def test_file_downloads_and_public_links_per_user(con, scenario):
    rows = con.sql(
        "SELECT actor_user_id, downloads, files_downloaded, public_links_created "
        "FROM file_activity_by_user WHERE actor_user_id IN ('U0ALICE', 'U0BOB')"
    ).fetchall()
    assert {u: (d, f, p) for u, d, f, p in rows} == scenario.EXPECTED["files_by_user"]


def test_anomalies_with_reasons(con, scenario):
    rows = _only_scenario(
        con.sql(
            "SELECT event_id, reasons, epoch(action_time), anomaly_ip_address FROM anomalies"
        ).fetchall()
    )
    assert {r[0]: r[1] for r in rows} == scenario.EXPECTED["anomalies"]
    by_id = {r[0]: r for r in rows}
    h2 = scenario.T0 + 2 * scenario.HOUR
    assert by_id["ev-anom-1"][2:] == (h2 - 600, "203.0.113.66")
    assert by_id["ev-anom-2"][2] == pytest.approx(h2 + 10.5)
    counts = dict(
        con.sql(
            "SELECT reason, count(*) FROM anomaly_reasons WHERE event_id LIKE 'ev-%' "
            "GROUP BY reason"
        ).fetchall()
    )
    assert counts == {"tor": 1, "asn": 1, "session_fingerprint": 1}


def test_workflow_changes(con, scenario):
    rows = _only_scenario(
        con.sql(
            "SELECT event_id, workflow_type, workflow_id, workflow_name, actor, app_id "
            "FROM workflow_changes"
        ).fetchall()
    )
    got = {r[0]: (r[1], r[2], r[3], r[4].upper()) for r in rows}
    assert got == scenario.EXPECTED["workflows"]
    assert {r[0]: r[5] for r in rows}["ev-wf2-1"] == "A0WF"


def test_coverage_gaps_and_volume(con, scenario):
    coverage = con.sql(
        "SELECT epoch(hour)::BIGINT, committed, batches, kinds, events FROM coverage ORDER BY 1"
    ).fetchall()
    t0, hour = scenario.T0, scenario.HOUR
    assert [c[0] for c in coverage] == [t0 + i * hour for i in range(5)]
    assert coverage[0][1:5] == (True, 2, ["hour", "late"], 10)
    assert coverage[3][1:5] == (True, 1, ["empty"], 0)
    assert con.sql("SELECT count(*) FROM gaps").fetchall() == [(0,)]
    per_hour = con.sql("SELECT sum(events) FROM events_per_hour").fetchall()[0][0]
    assert per_hour == con.sql("SELECT count(*) FROM audit_events").fetchall()[0][0]
    top = con.sql("SELECT action, events FROM top_actions WHERE action = 'file_downloaded'")
    assert top.fetchall()[0][1] >= 3


def test_readme_examples_return_what_they_say(con):
    """README: `select * from top_actions limit 5` is the top five; per-hour views in order."""
    top = con.sql("select action, events from top_actions limit 5").fetchall()
    truth = con.sql(
        "select action, count(*) from audit_events group by 1 order by 2 desc, 1 limit 5"
    ).fetchall()
    assert top == truth
    for view, column in (("events_per_hour", "hour"), ("coverage", "hour")):
        hours = [r[0] for r in con.sql(f"select {column} from {view}").fetchall()]
        assert hours == sorted(hours) and len(hours) > 1
    times = con.sql("select date_create, event_id from admin_changes").fetchall()
    assert times == sorted(times)
