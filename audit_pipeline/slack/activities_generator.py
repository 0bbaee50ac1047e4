"""Seeded workflow runs, as ``admin.apps.activities.list`` reports them.

A run is a ``trigger_executed``, a ``workflow_execution_started``, for each step a
``workflow_step_started`` and a ``workflow_step_execution_result`` (custom steps also log
``function_execution_started``/``_output``/``_result``), and a ``workflow_execution_result``
(``Success``, ``Error`` with ``error`` and ``error_stage``, or ``Pending`` while an
approval waits). Every record of a run shares its ``trace_id``; step records carry the
run's execution id as ``parent_execution_id``. Workflows and their apps are the audit
generator's ``workflow_v2`` objects of the same seed, and :func:`publish_entries` writes the
``workflow_v2_published`` audit entries of exactly those workflows, so runs can be tied to
the configuration that ran. Times are epoch microseconds; a run lasts a few minutes and may
end in the next hour.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from audit_pipeline.slack import generator

HOUR = 3600
MICROS = 1_000_000
ACTIVE_WORKFLOWS = 6
TRIGGER_TYPES = ("shortcut", "event", "scheduled", "webhook", "external", "blockkit")
APPROVAL_FUNCTION = "Request approval"
FORM_FUNCTION = "Collect info in a form"
MESSAGE_FUNCTION = "Send a message"
REMINDER_FUNCTION = "Send a reminder"
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class WorkflowPlan:
    """One published workflow: its ids, trigger and ordered step kinds."""

    workflow: dict
    trigger_id: str
    trigger_type: str
    steps: tuple[tuple[str, str, str], ...]  # (kind, function id, function name)

    @property
    def workflow_id(self) -> str:
        return self.workflow["id"]

    @property
    def app_id(self) -> str:
        return self.workflow["app_id"]


def _sid(rng: random.Random, prefix: str, n: int = 9) -> str:
    return prefix + "".join(rng.choice(_ALPHABET) for _ in range(n))


def workflow_plans(seed: int) -> list[WorkflowPlan]:
    """workflow_plans returns the workflows that run, taken from the audit generator's org."""
    org = generator._org(seed)
    rng = random.Random(f"audit-pipeline/activities/plans/{seed}")
    kinds = [
        ("approval", "message"),
        ("form", "approval", "message"),
        ("message", "reminder"),
        ("form", "custom", "message"),
        ("custom", "approval"),
        ("form", "message", "custom", "reminder"),
    ]
    plans = []
    for i, workflow in enumerate(org.workflows_v2[:ACTIVE_WORKFLOWS]):
        names = {
            "approval": APPROVAL_FUNCTION,
            "form": FORM_FUNCTION,
            "message": MESSAGE_FUNCTION,
            "reminder": REMINDER_FUNCTION,
            "custom": rng.choice(("Create ticket", "Sync to CRM", "Reverse", "Lookup order")),
        }
        steps = tuple((k, _sid(rng, "Fn0"), names[k]) for k in kinds[i % len(kinds)])
        plans.append(
            WorkflowPlan(
                workflow=dict(workflow),
                trigger_id=_sid(rng, "Ft0"),
                trigger_type=TRIGGER_TYPES[i % len(TRIGGER_TYPES)],
                steps=steps,
            )
        )
    return plans


def _people(seed: int) -> tuple[list[str], list[str], list[str], str, str]:
    org = generator._org(seed)
    users = [u[0] for u in org.users[:40]]
    channels = [c["id"] for c in org.channels[:20]]
    return users, channels, list(org.team_ids), org.enterprise["id"], org.enterprise["name"]


class _Run:
    """Builds the activities of one run in time order."""

    def __init__(self, rng: random.Random, plan: WorkflowPlan, start_us: int, seed: int):
        self.rng = rng
        self.plan = plan
        self.t = start_us
        users, channels, teams, enterprise_id, _ = _people(seed)
        self.users, self.channels = users, channels
        self.team_id = rng.choice(teams)
        self.enterprise_id = enterprise_id
        self.trace_id = _sid(rng, "Tr0", 11)
        self.execution_id = _sid(rng, "Fx0", 11)
        self.actor = rng.choice(users)
        self.channel = rng.choice(channels)
        self.out: list[dict] = []

    def _advance(self, lo_ms: int, hi_ms: int) -> int:
        self.t += self.rng.randint(lo_ms, hi_ms) * 1000 + self.rng.randint(0, 999)
        return self.t

    def emit(self, event_type: str, payload: dict, *, level: str = "info", **extra) -> dict:
        activity = {
            "enterprise_id": self.enterprise_id,
            "team_id": self.team_id,
            "app_id": self.plan.app_id,
            "source": "slack",
            "component_type": "workflows",
            "component_id": self.plan.workflow_id,
            "event_type": event_type,
            "level": level,
            "trace_id": self.trace_id,
            "created": self.t,
            "payload": payload,
            **extra,
        }
        self.out.append(activity)
        return activity

    def build(self) -> list[dict]:
        rng, plan = self.rng, self.plan
        name = plan.workflow["name"]
        trip = {"user_id": self.actor, "channel_id": self.channel}
        if plan.trigger_type == "event":
            trip["reaction"] = "white_check_mark"
            trip["message_ts"] = f"{self.t // MICROS - 40}.{rng.randint(0, 999999):06d}"
        trigger = {
            "id": plan.trigger_id,
            "type": plan.trigger_type,
            "config": {"name": f"{name} trigger", "description": f"Starts {name}"},
            "trip_information": None if plan.trigger_type == "scheduled" else trip,
        }
        self.emit("trigger_executed", {"trigger": trigger, "function_name": name})
        self._advance(5, 80)
        started_by = None if plan.trigger_type == "scheduled" else self.actor
        self.emit(
            "workflow_execution_started",
            {
                "workflow_name": name,
                "actor": started_by,
                "function_execution_id": self.execution_id,
            },
        )
        outcome, error, stage = "Success", None, None
        total = len(plan.steps)
        for index, (kind, function_id, function_name) in enumerate(plan.steps, 1):
            result = self._step(kind, function_id, function_name, index, total)
            if result != "Success":
                outcome = result
                if result == "Error":
                    error, stage = f"{function_name} failed", "function_execution"
                break
        self._advance(5, 200)
        payload: dict = {"workflow_name": name, "exec_outcome": outcome}
        if error:
            payload.update({"error": error, "error_stage": stage})
        self.emit("workflow_execution_result", payload, level="error" if error else "info")
        return self.out

    def _step(self, kind: str, function_id: str, function_name: str, index: int, total: int) -> str:
        rng = self.rng
        execution_id = _sid(rng, "Fx0", 11)
        step = {"parent_execution_id": self.execution_id}
        self._advance(10, 300)
        self.emit(
            "workflow_step_started",
            {
                "function_id": function_id,
                "function_name": function_name,
                "function_execution_id": execution_id,
                "current_step": index,
                "total_steps": total,
            },
            **step,
        )
        inputs: dict = {}
        outputs: dict = {}
        outcome = "Success"
        if kind == "approval":
            approver = rng.choice(self.users)
            inputs = {"approver": approver, "request": f"Approve request from <@{self.actor}>"}
            roll = rng.random()
            self._advance(20_000, 180_000)
            if roll < 0.15:
                outcome = "Pending"
            else:
                decision = "approved" if roll < 0.75 else "denied"
                outputs = {"approver": approver, "decision": decision}
        elif kind == "form":
            self._advance(15_000, 90_000)
            inputs = {"form_title": "Request details", "submitter": self.actor}
            outputs = {
                "fields": {"reason": rng.choice(("onboarding", "access", "budget")), "amount": 3},
                "submitted_by": self.actor,
            }
        elif kind in ("message", "reminder"):
            self._advance(100, 1500)
            inputs = {"channel_id": self.channel, "message": f"{function_name} for the request"}
            if kind == "reminder":
                inputs["remind_at"] = self.t // MICROS + 3600
            outputs = {
                "channel_id": self.channel,
                "message_ts": f"{self.t // MICROS}.{rng.randint(0, 999999):06d}",
            }
        else:
            outcome = self._custom(function_id, function_name)
            inputs = {"record": _sid(rng, "R", 6)}
            outputs = {} if outcome == "Error" else {"ticket": _sid(rng, "T", 6)}
        self._advance(5, 100)
        payload = {
            "function_id": function_id,
            "function_name": function_name,
            "function_execution_id": execution_id,
            "exec_outcome": outcome,
            "inputs": inputs,
        }
        if outputs:
            payload["outputs"] = outputs
        self.emit(
            "workflow_step_execution_result",
            payload,
            level="error" if outcome == "Error" else "info",
            **step,
        )
        return outcome

    def _custom(self, function_id: str, function_name: str) -> str:
        rng = self.rng
        fn = {"component_type": "functions", "component_id": function_id}
        self._advance(50, 400)
        self.emit(
            "function_execution_started",
            {"function_name": function_name, "function_type": "app"},
            parent_execution_id=self.execution_id,
            **fn,
        )
        self._advance(100, 2000)
        log_line = self.emit(
            "function_execution_output",
            {"function_name": function_name, "log": f"{function_name}: processing record"},
            level="debug",
            parent_execution_id=self.execution_id,
            **fn,
        )
        if rng.random() < 0.3:
            # A function logging the same line twice in one microsecond: identical records.
            self.out.append(dict(log_line))
        failed = rng.random() < 0.2
        self._advance(100, 3000)
        payload = {"function_name": function_name}
        if failed:
            payload["error"] = "upstream_timeout"
        self.emit(
            "function_execution_result",
            payload,
            level="error" if failed else "info",
            parent_execution_id=self.execution_id,
            **fn,
        )
        return "Error" if failed else "Success"


def runs_started(seed: int, hour_start: int, runs_per_hour: int) -> list[list[dict]]:
    """runs_started returns the runs that start within the hour, each in time order."""
    if hour_start % HOUR:
        raise ValueError(f"hour_start must be aligned to a UTC hour, got {hour_start}")
    if runs_per_hour <= 0:
        return []
    rng = random.Random(f"audit-pipeline/activities/{seed}/{hour_start}")
    plans = workflow_plans(seed)
    count = max(0, round(runs_per_hour * (0.7 + 0.6 * rng.random())))
    runs = []
    for _ in range(count):
        start = hour_start * MICROS + rng.randint(0, HOUR * MICROS - 1)
        runs.append(_Run(rng, rng.choice(plans), start, seed).build())
    return runs


def generate_activity_hour(seed: int, hour_start: int, runs_per_hour: int) -> list[dict]:
    """generate_activity_hour returns the activities created in ``[hour_start, +1h)``,
    oldest first (runs started in the previous hour may end in this one)."""
    lo, hi = hour_start * MICROS, (hour_start + HOUR) * MICROS
    out = [
        activity
        for h in (hour_start - HOUR, hour_start)
        for run in runs_started(seed, h, runs_per_hour)
        for activity in run
        if lo <= activity["created"] < hi
    ]
    out.sort(key=lambda a: a["created"])
    return out


def publish_entries(seed: int, start: int, end: int) -> list[dict]:
    """publish_entries returns the ``workflow_v2_published`` audit entries of the workflows
    that run: each one in the first hour of ``[start, end)``, and republished now and then."""
    _, _, by_name = generator._action_table()
    spec = by_name["workflow_v2_published"]
    org = generator._org(seed)
    entries = []
    for hour in range(start, end, HOUR):
        rng = random.Random(f"audit-pipeline/activities/publish/{seed}/{hour}")
        source = generator._Hour(seed, hour)
        for i, plan in enumerate(workflow_plans(seed)):
            if hour != start and rng.random() >= 0.03:
                continue
            t = hour + rng.randint(0, 59) + 60 * i
            publisher = next((u for u in org.users if u[0] == plan.workflow["updated_by"]), None)
            actor, user = source.actor("user")
            if publisher is not None:
                actor, user = {"type": "user", "user": source.user_obj(publisher)}, publisher
            entry = source.entry(t, spec, actor, user)
            entry["entity"] = {"type": "workflow_v2", "workflow_v2": dict(plan.workflow)}
            entries.append(entry)
    return entries
