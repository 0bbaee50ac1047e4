"""The witness set in Dagster: slack_audit_events asks two witnesses (own processes) after
each commit; audit_ledger's witness checks pass with 2/2, fail without blocking when one
is down, and block the run when the witnesses saw a history the log no longer extends."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import dagster as dg
import pytest

from audit_pipeline.defs.alerts import slack_run_failure_alert
from audit_pipeline.defs.resources import LedgerResource, SlackNotifier
from audit_pipeline.defs.witnesses import WitnessSetResource
from audit_pipeline.lake import PARQUET_FORMAT
from audit_pipeline.ledger import Ledger
from audit_pipeline.ledger.keys import load_signing_key
from audit_pipeline.ledger.layout import CHECKPOINTS, manifest_path

_spec = importlib.util.spec_from_file_location(
    "_witness_test_helpers", Path(__file__).parents[1] / "witness" / "conftest.py"
)
_helpers = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _helpers
_spec.loader.exec_module(_helpers)
start_witness = _helpers.start_witness

pytestmark = pytest.mark.e2e


def test_witnessed_pipeline_then_a_truncation_alarm(
    pipeline_factory, notifier_server, tmp_path: Path, key_path: Path, start_witness
) -> None:
    notifier = SlackNotifier(
        bot_token="xoxb-test-bot-token-not-a-secret-0003",
        channel="#audit-alerts",
        base_url=notifier_server.base_url,
    )
    pipeline = pipeline_factory(notifier=notifier)
    vkey = load_signing_key(key_path).vkey
    log = f"audit-pipeline/ledger={vkey}"
    w1 = start_witness(tmp_path / "w1", "witness.test/w1", [log])
    w2 = start_witness(tmp_path / "w2", "witness.test/w2", [log])
    pipeline.resources["witnesses"] = WitnessSetResource(
        witnesses=f"w1 {w1.url} {w1.vkey}; w2 {w2.url} {w2.vkey}"
    )
    witness_checks = {"ledger_witnesses_agree", "ledger_witness_quorum"}
    first = pipeline.sync(0, 1, 2)
    assert first.success and not first.failed_checks & witness_checks
    quorum = first.check_metadata("ledger_witness_quorum")
    assert quorum["witnesses_configured"] == 2 and len(quorum["cosigned_by"]) == 2
    assert first.metadata("slack_audit_events")["witnesses"]["cosignatures"] == 2

    w2.kill()
    second = pipeline.sync(3)
    assert second.success  # a witness that is down holds nothing back
    assert second.failed_checks == {"ledger_witness_quorum"}
    assert pipeline.downstream_runs[-1] == second.run_id

    # Delete the newest batch with its checkpoint and commit its hour again: a fork that w1
    # (which cosigned the deleted history) refuses.
    data = pipeline.data_dir
    newest = Ledger(data, file_format=PARQUET_FORMAT).manifests()[-1]
    (data / newest.manifest.data.path).unlink()
    (data / manifest_path(newest.sequence)).unlink()
    for cp in (data / CHECKPOINTS).iterdir():
        if int(cp.name.split(".")[0]) > newest.sequence:
            cp.unlink()
    stolen = tmp_path / "stolen-key"  # a copy of the key, without a signer's state beside it
    stolen.write_bytes(key_path.read_bytes())
    stolen.chmod(0o600)
    pipeline.resources["ledger"] = LedgerResource(data_dir=str(data), signing_key=str(stolen))
    third = pipeline.sync(3)
    assert not third.success
    assert "ledger_witnesses_agree" in third.failed_checks
    assert third.run_id not in pipeline.downstream_runs
    detail = third.check_metadata("ledger_witnesses_agree")["first_failure"]
    assert "witness_conflict" in detail and "witness.test/w1" in detail

    # The failed run is a Slack alert naming the check (the run-failure sensor).
    context = dg.build_run_status_sensor_context(
        sensor_name="alert",
        dagster_event=third.result.get_run_failure_event(),
        dagster_instance=pipeline.instance,
        dagster_run=pipeline.instance.get_run_by_id(third.run_id),
        resources={"slack_notifier": notifier},
    )
    slack_run_failure_alert(context.for_run_failure())
    [post] = notifier_server.posts
    assert "ledger_witnesses_agree" in post["text"]
