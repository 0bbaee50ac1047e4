"""Deterministic, seeded audit log entries shaped like the live Slack Audit Logs API.

``generate_hour(seed, hour_start, events_per_hour)`` returns the entries of one UTC hour
``[hour_start, hour_start + 3600)`` oldest first; the result depends only on its arguments,
so any hour can be generated alone, in any order, in any process (no ``hash()``, no set
iteration: the same arguments give the same bytes). ``generate_range`` chains hours lazily.

What the entries exercise, because a collector meets all of it live:

- volume follows a weekday/daytime curve around ``events_per_hour`` (weekly mean ~= it);
- same-second bursts (one admin action emitting dozens, sometimes thousands, of entries
  with one ``date_create``), plus entries at exactly H:00:00 and H:59:59;
- every action of the real catalogue, targeting the entity type it plausibly targets, with
  entity types the SDK does not model (``huddle``, ``list``, ``native_dlp_rule`` ...);
- ids that are UUID-like but not always hex; placeholder actors (``USLACKSECURITY``,
  ``USLACKUSER``) and bot actors with ``botuser-T…-A…@slack-bots.com`` e-mails;
- ``context``: workspace or enterprise locations, ``ua``/``ip_address`` sometimes ``""``,
  ``session_id`` as int, string or null, optional ``app``, ``acting_agent``, ``agent_message``;
- ``details`` absent, null, or per-action objects: ``new_value``/``previous_value`` as
  string, list, object of lists or bool; ``succeeded_users`` as a list or a JSON string;
  anomalies with a microsecond ``action_timestamp`` earlier than ``date_create``; now and
  then a key no SDK model knows.

Keys are in the live order ``id, date_create, action, actor, entity, context, details``.
"""

from __future__ import annotations

import copy
import json
import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from functools import lru_cache
from itertools import accumulate

from audit_pipeline.slack import catalogue

HOUR = 3600

_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
_NON_HEX = str.maketrans("abcdef", "ghkmrz")
_ABSENT = object()

# fmt: off
_FIRST_NAMES = (
    "Ava", "Liam", "Maya", "Noah", "Chloé", "Mateo", "Zoë", "Ethan", "Priya", "Lucas", "Amara",
    "Jonas", "Sofía", "Hiroshi", "Fatima", "Łukasz", "Ingrid", "Kwame", "Mei", "Søren", "Olivia",
    "Rafael", "Aisha", "Dmitri", "Elena", "Omar", "Grace", "Tomás", "Hana", "Felix", "Nadia",
    "Kai", "Leila", "Arjun", "Björn", "Camille", "Diego", "Yuki", "Anaïs", "Samuel",
)
_LAST_NAMES = (
    "Smith", "García", "Chen", "Müller", "Okafor", "Nguyễn", "Kowalski", "Rossi", "Patel",
    "Johansson", "O'Brien", "Kim", "Silva", "Dubois", "Tanaka", "Haddad", "Novak", "Ivanova",
    "Fernández", "Lindqvist", "Mensah", "Ahmed", "Schmidt", "Brown", "Costa", "Yilmaz",
    "Andersen", "Moreau", "Sato", "Khan", "Walker", "Jensen", "Petrov", "Lopez", "Wright",
)
_COMPANIES = (
    ("Northwind Traders", "northwind"),
    ("Globex Corporation", "globex"),
    ("Initech", "initech"),
    ("Umbrella Health", "umbrella-health"),
    ("Tyrell Systems", "tyrell"),
    ("Soylent Foods", "soylent"),
)
_WORKSPACES = (
    "Engineering", "Sales", "Customer Support", "Finance", "Marketing", "Legal", "Operations",
    "Design",
)
_USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/128.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/127.0.0.0 Safari/537.36 Edg/127.0.2651.86",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Slack/4.41.105 Chrome/128.0.6613.120 Electron/32.1.0 Safari/537.36 AppleWebKit/537.36 "
    "Sonic Slack_SSB/4.41.105",
    "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0",
    "com.tinyspeck.chatlyio/24.09.10 (iPhone; iOS 17.6.1; Scale/3.00)",
    "Slack/24.09.10.0 (Linux; Android 14; Pixel 8; Build/AP2A.240905.003)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "python-requests/2.32.3",
    "Apache-HttpClient/4.5.14 (Java/17.0.12)",
    "SlackCLI/2.30.1 (darwin; arm64)",
)
_SCOPES = (
    "channels:read", "channels:history", "chat:write", "users:read", "users:read.email",
    "files:read", "files:write", "groups:read", "im:history", "commands", "reactions:read",
    "team:read", "admin.conversations:read", "auditlogs:read", "links:read", "usergroups:read",
)
_APP_NAMES = (
    "Jira Cloud", "Google Drive", "Zoom", "PagerDuty", "GitHub", "Salesforce", "Workday",
    "Polly", "Donut", "Asana", "Okta Workflows", "Datadog", "Figma", "Loom", "Box", "Tableau",
)
_FILETYPES = (
    ("pdf", "pdf"), ("docx", "docx"), ("xlsx", "xlsx"), ("png", "png"), ("jpg", "jpg"),
    ("csv", "csv"), ("zip", "zip"), ("txt", "text"), ("pptx", "pptx"), ("mp4", "mp4"),
)
_FILE_WORDS = (
    "Q3 plan", "roadmap", "invoice", "contract draft", "screenshot", "payroll export",
    "board deck", "incident review", "org chart", "budget", "meeting notes", "design spec",
)
_CHANNEL_WORDS = (
    "general", "random", "eng", "sales", "support", "incidents", "announcements", "design",
    "finance", "legal", "hiring", "oncall", "deploys", "ops", "marketing", "ext-acme",
    "proj-atlas", "proj-hermes", "café-talk", "team-münchen",
)
_ROLES = (
    ("Channels Admin", "system"), ("Users Admin", "system"), ("Roles Admin", "system"),
    ("Conversation Admin", "system"), ("Audit Logs Viewer", "custom"),
    ("DLP Admin", "system"), ("Security Admin", "custom"), ("Workflow Admin", "custom"),
)
_ACCOUNT_TYPE_ROLES = (
    (1001, "Channel Manager"), (1002, "Workspace Admin"), (1003, "Workspace Owner"),
    (1004, "Org Admin"), (1005, "Org Owner"), (1006, "Multi-Channel Guest"),
)
_ANOMALY_REASONS = (
    "asn", "ip_address", "tor", "session_fingerprint", "unexpected_scraping",
    "unexpected_client", "user_agent", "excessive_downloads", "unexpected_admin_action",
)
_CITIES = (
    "San Francisco, US", "Toronto, CA", "London, GB", "Berlin, DE", "São Paulo, BR",
    "Bengaluru, IN", "Tokyo, JP", "Lagos, NG", "Sydney, AU", "Amsterdam, NL",
)
_UNKNOWN_DETAIL_KEYS = (
    ("client_surface", "desktop"),
    ("is_admin_api_call", True),
    ("event_schema_version", 3),
    ("affected_workspaces", ["T0NEW00001"]),
    ("origin_request", {"source": "scim", "batch": 7}),
)
# fmt: on

# Relative weights of the actions a real org emits most; every other catalogue action
# shares ``_TAIL_WEIGHT``, so all 762 names occur over a few days of data.
_HOT_ACTIONS = {
    "user_login": 150.0,
    "user_logout": 80.0,
    "file_downloaded": 90.0,
    "file_uploaded": 35.0,
    "file_shared": 18.0,
    "user_channel_join": 50.0,
    "user_channel_leave": 15.0,
    "canvas_opened": 25.0,
    "canvas_edited": 12.0,
    "list_opened": 8.0,
    "huddle_started": 10.0,
    "huddle_ended": 10.0,
    "huddle_participant_joined": 18.0,
    "slack_ai_summary_requested": 8.0,
    "user_profile_updated": 8.0,
    "user_login_failed": 9.0,
    "anomaly": 5.0,
    "public_channel_created": 5.0,
    "private_channel_created": 4.0,
    "channel_renamed": 2.0,
    "file_public_link_created": 3.0,
    "canvas_shared": 5.0,
    "message_tombstoned": 3.0,
    "app_installed": 3.0,
    "app_scopes_expanded": 2.0,
    "user_created": 3.0,
    "user_deactivated": 3.0,
    "guest_created": 2.0,
    "user_added_to_usergroup": 4.0,
    "role_assigned": 2.0,
    "permissions_assigned": 1.0,
    "workflow_published": 2.0,
    "workflow_v2_published": 2.0,
    "external_shared_channel_invite_sent": 2.0,
    "user_session_reset_by_admin": 1.0,
    "emoji_added": 3.0,
    "pref.who_can_create_public_channels": 1.0,
    "pref.allow_calls": 1.0,
    "pref.sso_setting_changed": 0.5,
}
_TAIL_WEIGHT = 0.55
_PREF_WEIGHT = 0.9

# Actions Slack itself performs.
_SECURITY_ACTIONS = frozenset(
    {
        "user_logout_compromised",
        "user_session_invalidated",
        "user_sessions_reset_by_circuit_breaker",
        "user_sessions_reset_by_anomaly_event_response",
        "file_malicious_content_detected",
        "user_password_reset_slack_security",
        "native_dlp_rule_action_applied",
    }
)
_SYSTEM_PREFIXES = (
    "scheduled_export_",
    "team.unsupportedVersions",
    "team_unsupported_versions",
    "guest_expired",
    "external_shared_channel_invite_auto_revoked",
    "external_shared_channel_invite_expired",
    "migration_",
)
_ADMIN_PREFIXES = (
    "pref.",
    "role_",
    "permissions_",
    "barrier_",
    "legal_hold_",
    "user_created",
    "user_deactivated",
    "user_reactivated",
    "guest_",
    "app_approved",
    "app_restricted",
    "app_allowlist_",
    "org_app_",
    "manual_export_",
    "channels_export_",
    "ekm_",
    "idp_",
    "organization_",
    "workspace_",
    "native_dlp_rule_",
    "user_session_reset_by_admin",
    "bulk_session_reset_by_admin",
    "domain_",
    "salesforce_mcp_server_",
)
_AGENT_PREFIXES = ("slack_ai_", "mcp_", "agentforce_", "app_agentforce_", "slackbot_ai_")

# Actions that one admin gesture fans out into many same-second entries.
_BURST_ACTIONS = (
    "user_channel_join",
    "user_deactivated",
    "file_downloaded",
    "user_added_to_usergroup",
    "role_assigned",
    "user_session_reset_by_admin",
    "org_app_workspace_added",
    "guest_deactivated",
    "permissions_assigned",
    "user_created",
)


class HourEntries(list):
    """HourEntries is the list of one hour's entries plus the ids that arrive late.

    ``late_ids`` is drawn from its own random stream, so the entries themselves do not
    depend on ``late_fraction``.
    """

    __slots__ = ("hour_start", "late_ids")

    def __init__(self, entries: list[dict], hour_start: int, late_ids: frozenset[str]):
        super().__init__(entries)
        self.hour_start = hour_start
        self.late_ids = late_ids


# --- the organization: a fixed population per seed ------------------------------------


class _Org:
    """The people, workspaces and objects one seed's organization is made of."""

    def __init__(self, seed: int):
        rng = random.Random(f"audit-pipeline/org/{seed}")
        self.rng = rng
        company, slug = _COMPANIES[seed % len(_COMPANIES)]
        self.enterprise = {
            "id": self._sid("E"),
            "name": company,
            "domain": f"{slug}-grid",
        }
        self.enterprise_location = {"type": "enterprise", **self.enterprise}
        self.workspaces = []
        for name in _WORKSPACES[: 4 + seed % 5]:
            ws_slug = name.lower().replace(" ", "-")
            self.workspaces.append(
                {"id": self._sid("T"), "name": name, "domain": f"{slug}-{ws_slug}"}
            )
        self.workspace_locations = [{"type": "workspace", **ws} for ws in self.workspaces]
        self.team_ids = [ws["id"] for ws in self.workspaces]
        mail_domain = f"{slug}.example.com"

        self.apps = []
        for i in range(48):
            name = _APP_NAMES[i % len(_APP_NAMES)] + ("" if i < len(_APP_NAMES) else f" {i}")
            scopes = sorted(rng.sample(_SCOPES, 2 + int(rng.random() * 6)))
            self.apps.append(
                {
                    "id": self._sid("A"),
                    "name": name,
                    "is_distributed": rng.random() < 0.7,
                    "is_directory_approved": rng.random() < 0.6,
                    "is_workflow_app": rng.random() < 0.15,
                    "scopes": scopes,
                }
            )

        # users: (id, name, email, team, account_type, ip, ua, session_id)
        self.users = []
        for i in range(2400):
            first = _FIRST_NAMES[int(rng.random() * len(_FIRST_NAMES))]
            last = _LAST_NAMES[int(rng.random() * len(_LAST_NAMES))]
            local = _ascii_slug(f"{first}.{last}") + (str(i) if rng.random() < 0.3 else "")
            r = rng.random()
            account_type = (
                "owner" if r < 0.004 else
                "admin" if r < 0.03 else
                "restricted" if r < 0.09 else
                "ultra_restricted" if r < 0.12 else
                "user"
            )  # fmt: skip
            self.users.append(
                (
                    self._sid("W" if rng.random() < 0.7 else "U"),
                    f"{first} {last}",
                    f"{local}@{mail_domain}",
                    self.team_ids[int(rng.random() * len(self.team_ids))],
                    account_type,
                    _random_ip(rng),
                    _USER_AGENTS[int(rng.random() * 7)],
                    rng.randrange(10**9, 10**10),
                )
            )
        self.admins = [u for u in self.users if u[4] in ("admin", "owner")]
        self.bots = []
        for app in self.apps[:20]:
            team = self.team_ids[int(rng.random() * len(self.team_ids))]
            self.bots.append(
                (
                    self._sid("U"),
                    _ascii_slug(app["name"]).replace(".", "-") + "-bot",
                    f"botuser-{team}-{app['id']}@slack-bots.com",
                    team,
                    "user",
                    _random_ip(rng),
                    _USER_AGENTS[7 + int(rng.random() * 3)],
                    rng.randrange(10**9, 10**10),
                    app,
                )
            )
        self.channels = []
        for i in range(900):
            word = _CHANNEL_WORDS[int(rng.random() * len(_CHANNEL_WORDS))]
            r = rng.random()
            privacy = "public" if r < 0.6 else "private" if r < 0.93 else "mpim"
            channel = {
                "id": self._sid("C" if privacy == "public" else "G"),
                "name": f"{word}-{i}" if privacy != "mpim" else f"mpdm-{i}",
                "privacy": privacy,
                "is_shared": rng.random() < 0.12,
                "is_org_shared": rng.random() < 0.3,
            }
            if channel["is_org_shared"]:
                channel["teams_shared_with"] = rng.sample(self.team_ids, min(2, len(self.team_ids)))
            self.channels.append(channel)
        self.files = []
        for _ in range(3000):
            ext, filetype = _FILETYPES[int(rng.random() * len(_FILETYPES))]
            title = _FILE_WORDS[int(rng.random() * len(_FILE_WORDS))]
            self.files.append(
                {
                    "id": self._sid("F"),
                    "name": f"{title.replace(' ', '_')}.{ext}",
                    "filetype": filetype,
                    "title": title,
                }
            )
        self.canvases = [
            {"id": self._sid("F"), "filetype": "quip", "title": f"{w.title()} canvas"}
            for w in (rng.choice(_FILE_WORDS) for _ in range(400))
        ]
        self.lists = [{"id": self._sid("F"), "name": f"{w} tracker"} for w in _FILE_WORDS * 10]
        self.usergroups = [{"id": self._sid("S"), "name": f"{w}-team"} for w in _CHANNEL_WORDS * 3]
        self.workflows = [{"id": self._sid("Wf"), "name": f"{w} request"} for w in _FILE_WORDS * 4]
        self.workflows_v2 = [
            {
                "id": self._sid("Wf"),
                "app_id": self.apps[int(rng.random() * len(self.apps))]["id"],
                "date_updated": 1_700_000_000 + int(rng.random() * 50_000_000),
                "callback_id": f"{_ascii_slug(w).replace(' ', '_')}_flow",
                "name": f"{w.title()} flow",
                "updated_by": self.users[int(rng.random() * len(self.users))][0],
                "step_configuration": [
                    {"name": "send_message", "step_id": "0", "inputs": {"channel_id": "{{c}}"}},
                    {"name": "create_canvas", "step_id": "1", "inputs": {}},
                ],
            }
            for w in _FILE_WORDS * 3
        ]
        self.roles = [{"id": self._sid("Rl"), "name": n, "type": t} for n, t in _ROLES]
        self.account_type_roles = [{"id": i, "name": n} for i, n in _ACCOUNT_TYPE_ROLES]
        self.barriers = [
            {
                "id": self._sid("Ib"),
                "primary_usergroup": self.usergroups[i]["id"],
                "barriered_from_usergroup": self.usergroups[-1 - i]["id"],
            }
            for i in range(6)
        ]
        self.templates = [
            {"id": self._sid("Tp"), "template_name": f"{w} template"} for w in _FILE_WORDS
        ]
        self.legal_holds = [{"id": self._sid("LH"), "name": f"Matter {i:03d}"} for i in range(6)]
        self.functions = [{"id": self._sid("Fn"), "name": f"{w} step"} for w in _FILE_WORDS]
        self.generic = {
            "app_approval_automation_rule": [
                {"id": self._sid("Ar"), "name": f"Rule {i}", "priority": i} for i in range(8)
            ],
            "native_dlp_rule": [
                {"id": self._sid("Dr"), "name": f"DLP {w}", "action": "tombstone"}
                for w in ("ssn", "credit-card", "api-key", "iban")
            ],
            "salesforce_mcp_server": [
                {"id": self._sid("Ms"), "name": "Salesforce MCP", "org_id": "00D5g00000Ab1cd"}
            ],
        }

        self.pools: dict[str, list[dict]] = {
            "file": self.files,
            "workspace": self.workspaces,
            "canvas": self.canvases,
            "list": self.lists,
            "usergroup": self.usergroups,
            "workflow": self.workflows,
            "role": self.roles,
            "account_type_role": self.account_type_roles,
            "barrier": self.barriers,
            "template": self.templates,
            "legal_hold_policy": self.legal_holds,
            "function": self.functions,
            **self.generic,
        }

    def _sid(self, prefix: str) -> str:
        rng = self.rng
        return "".join([prefix, "0", *(_ID_ALPHABET[int(rng.random() * 34)] for _ in range(8))])


def _ascii_slug(text: str) -> str:
    table = str.maketrans("éëèáíóúñøöüäłåïễç'", "eeeaiounoouaaaiec-")
    return text.lower().translate(table).encode("ascii", "ignore").decode()


def _random_ip(rng: random.Random) -> str:
    if rng.random() < 0.08:
        a, b, c = rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(16)
        return f"2001:db8:{a:x}:{b:x}::{c:x}"
    a, b = 1 + int(rng.random() * 222), int(rng.random() * 256)
    c, d = int(rng.random() * 256), 1 + int(rng.random() * 254)
    return f"{a}.{b}.{c}.{d}"


@lru_cache(maxsize=8)
def _org(seed: int) -> _Org:
    return _Org(seed)


# --- per-action behaviour -------------------------------------------------------------


def _pref_value_kind(action: str) -> str:
    name = action[5:]
    if "who_can" in name or name in ("enterprise_default_channels", "invited_user_preset"):
        return "object"
    if any(w in name for w in ("workspaces", "connectors", "fields", "users_to_notify", "browser")):
        return "list"
    if any(w in name for w in ("retention", "duration", "hour", "mins", "version", "timeout")):
        return "number"
    if any(w in name for w in ("allow", "enabled", "disabled", "only", "hide", "block", "display")):
        return "bool"
    return "string"


def _details_kind(action: str, category: str | None) -> str:
    if action == "anomaly":
        return "anomaly"
    if action.startswith("pref."):
        return "pref"
    if action in ("app_installed", "app_approved", "org_app_installed", "app_resources_granted"):
        return "app_install"
    if action in ("app_scopes_expanded", "bot_token_upgraded", "bot_token_downgraded"):
        return "app_scopes"
    if action in (
        "role_assigned",
        "role_removed",
        "permissions_assigned",
        "permissions_removed",
        "user_added_to_usergroup",
        "user_removed_from_usergroup",
        "bulk_session_reset_by_admin",
        "user_bulk_upload_to_usergroup_started",
        "user_add_to_usergroup_failed",
    ):
        return "bulk_users"
    if action.endswith(("_renamed", "_domain_changed", "_updated")) and category in (
        "workspace_or_org",
        "channel",
        "subteam",
    ):
        return "rename"
    if "export_" in action:
        return "export"
    if action in ("user_channel_join", "guest_channel_join"):
        return "inviter"
    if action in ("user_channel_leave", "guest_channel_leave"):
        return "kicker"
    if action in ("user_session_reset_by_admin", "user_session_invalidated"):
        return "session_reset"
    if action.startswith("guest_expiration"):
        return "expires_on"
    if action == "user_login_failed":
        return "login_failed"
    if action.startswith("external_shared_channel_invite"):
        return "shared_invite"
    if category == "huddle":
        return "huddle"
    if category == "message":
        return "message"
    if category in ("canvas", "list"):
        return "canvas"
    if action in ("user_login", "user_logout", "file_downloaded", "file_uploaded", "canvas_opened"):
        return "none"
    return "generic"


def _actor_kind(action: str) -> str:
    if action in _SECURITY_ACTIONS:
        return "security"
    if action.startswith(_SYSTEM_PREFIXES):
        return "system"
    if action.startswith(_ADMIN_PREFIXES):
        return "admin"
    return "user"


class _Spec:
    __slots__ = ("action", "actor", "agent", "details", "entity_types", "pref_kind")

    def __init__(self, action: str):
        self.action = action
        self.entity_types = catalogue.entity_types_for(action)
        self.details = _details_kind(action, catalogue.category_of(action))
        self.pref_kind = _pref_value_kind(action) if action.startswith("pref.") else ""
        self.actor = _actor_kind(action)
        self.agent = action.startswith(_AGENT_PREFIXES)


@lru_cache(maxsize=1)
def _action_table() -> tuple[list[_Spec], list[float], dict[str, _Spec]]:
    specs: list[_Spec] = []
    weights: list[float] = []
    for name in catalogue.action_names():
        specs.append(_Spec(name))
        if name in _HOT_ACTIONS:
            weights.append(_HOT_ACTIONS[name])
        elif name.startswith("pref."):
            weights.append(_PREF_WEIGHT)
        else:
            weights.append(_TAIL_WEIGHT)
    return specs, list(accumulate(weights)), {s.action: s for s in specs}


@lru_cache(maxsize=1)
def _entity_types() -> frozenset[str]:
    names = catalogue.action_names()
    return frozenset(t for name in names for t in catalogue.entity_types_for(name))


_DETAIL_KINDS = (
    "none",
    "generic",
    "pref",
    "anomaly",
    "bulk_users",
    "app_install",
    "app_scopes",
    "rename",
    "export",
    "inviter",
    "kicker",
    "session_reset",
    "expires_on",
    "login_failed",
    "shared_invite",
    "huddle",
    "message",
    "canvas",
)


# --- volume over time -----------------------------------------------------------------


def _raw_hour_weight(hour_of_day: int, weekday: int) -> float:
    # Busiest around 17:00 UTC (morning in the Americas, afternoon in Europe).
    daytime = 0.15 + math.exp(-((hour_of_day - 17) ** 2) / (2 * 4.5**2))
    return daytime * (1.0 if weekday < 5 else 0.35)


_WEEK_MEAN = sum(_raw_hour_weight(h, d) for h in range(24) for d in range(7)) / (24 * 7)


def diurnal_factor(hour_start: int) -> float:
    """diurnal_factor returns the hour's share of the weekly mean volume (mean 1.0)."""
    days, seconds = divmod(hour_start, 86400)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    return _raw_hour_weight(seconds // HOUR, weekday) / _WEEK_MEAN


# --- the hour builder -----------------------------------------------------------------


class _Hour:
    """Builds one hour's entries from one random stream; every draw happens in a fixed order."""

    def __init__(self, seed: int, hour_start: int):
        self.org = _org(seed)
        self.rng = random.Random(f"audit-pipeline/hour/{seed}/{hour_start}")
        self.rand = self.rng.random
        self.entity_builders = {
            etype: getattr(self, f"_entity_{etype}", self._entity_pooled)
            for etype in _entity_types()
        }
        self.detail_builders = {kind: getattr(self, f"_details_{kind}") for kind in _DETAIL_KINDS}

    def pick(self, seq: list | tuple):
        return seq[int(self.rand() * len(seq))]

    # ids and people

    def entry_id(self) -> str:
        s = f"{self.rng.getrandbits(128):032x}"
        if self.rand() < 0.01:
            s = s.translate(_NON_HEX)
        return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"

    def user_obj(self, u: tuple) -> dict:
        if self.rand() < 0.3:
            return {"id": u[0], "name": u[1], "email": u[2], "team": u[3], "account_type": u[4]}
        return {"id": u[0], "name": u[1], "email": u[2], "team": u[3]}

    def actor(self, kind: str) -> tuple[dict, tuple | None]:
        """Returns the actor object and the user tuple driving context (None for Slack)."""
        r = self.rand()
        org = self.org
        if kind == "user":
            pool = org.bots if r < 0.03 else org.users
        elif kind == "admin":
            pool = org.admins if r < 0.9 else org.bots if r < 0.93 else org.users
        elif kind == "security" or r < 0.5:
            team = org.enterprise["id"]
            if kind == "security":
                user = {"id": "USLACKSECURITY", "name": "Slack Security", "email": "", "team": team}
            else:
                user = {"id": "USLACKUSER", "name": "Slack", "email": "", "team": team}
            return {"type": "user", "user": user}, None
        else:
            pool = org.users
        u = pool[int(self.rand() * len(pool))]
        return {"type": "user", "user": self.user_obj(u)}, u

    def context(self, u: tuple | None, spec: _Spec) -> dict:
        rand = self.rand
        org = self.org
        if u is None:
            ctx = {
                "location": org.enterprise_location.copy(),
                "ua": "",
                "ip_address": "",
                "session_id": None,
            }
        else:
            if rand() < 0.75:
                locations = org.workspace_locations
                location = locations[int(rand() * len(locations))].copy()
            else:
                location = org.enterprise_location.copy()
            r = rand()
            ua = u[6] if r < 0.9 else "" if r < 0.93 else self.pick(_USER_AGENTS)
            r = rand()
            ip = u[5] if r < 0.9 else "" if r < 0.93 else _random_ip(self.rng)
            r = rand()
            session = u[7] if r < 0.75 else str(u[7]) if r < 0.87 else None
            ctx = {"location": location, "ua": ua, "ip_address": ip, "session_id": session}
            if len(u) > 8:
                ctx["app"] = u[8].copy()
        if "app" not in ctx and spec.entity_types[0] == "app" and rand() < 0.3:
            ctx["app"] = self.pick(org.apps).copy()
        if spec.agent and rand() < 0.4:
            bot = self.pick(org.bots)
            ctx["acting_agent"] = {"id": bot[8]["id"], "name": bot[8]["name"], "type": "bot"}
            if rand() < 0.5:
                ctx["agent_message"] = {
                    "channel": self.pick(org.channels)["id"],
                    "ts": f"{1_700_000_000 + int(rand() * 9e7)}.{int(rand() * 1e6):06d}",
                }
        return ctx

    # entities: one builder per type; types without one copy an object from the org's pool

    def entity(self, spec: _Spec, t: int) -> dict:
        types = spec.entity_types
        etype = types[0] if len(types) == 1 or self.rand() < 0.6 else types[1]
        return {"type": etype, etype: self.entity_builders[etype](spec, t, etype)}

    def _entity_pooled(self, spec: _Spec, t: int, etype: str) -> dict:
        pool = self.org.pools[etype]
        return pool[int(self.rand() * len(pool))].copy()

    def _entity_user(self, spec: _Spec, t: int, etype: str) -> dict:
        users = self.org.users
        return self.user_obj(users[int(self.rand() * len(users))])

    def _entity_enterprise(self, spec: _Spec, t: int, etype: str) -> dict:
        return self.org.enterprise.copy()

    def _entity_app(self, spec: _Spec, t: int, etype: str) -> dict:
        org = self.org
        app = self.pick(org.apps)
        r = self.rand()
        if r < 0.06:
            return {
                "id": app["id"],
                "app_id": app["id"],
                "distribution_type": "internal",
                "user_ids": [self.pick(org.users)[0] for _ in range(3)],
            }
        obj = app.copy()
        obj["scopes"] = list(app["scopes"])
        if r > 0.85:
            obj["bot_scopes"] = ["chat:write", "commands"]
        return obj

    def _entity_channel(self, spec: _Spec, t: int, etype: str) -> dict:
        obj = self.pick(self.org.channels).copy()
        if "teams_shared_with" in obj:
            obj["teams_shared_with"] = list(obj["teams_shared_with"])
        return obj

    def _entity_huddle(self, spec: _Spec, t: int, etype: str) -> dict:
        users = self.org.users
        return {
            "id": "R0" + self.org_sid_suffix(),
            "date_start": t - int(self.rand() * 3000),
            "date_end": t if spec.action == "huddle_ended" else 0,
            "participants": [self.pick(users)[0] for _ in range(1 + int(self.rand() * 4))],
        }

    def _entity_message(self, spec: _Spec, t: int, etype: str) -> dict:
        org = self.org
        return {
            "team": self.pick(org.team_ids),
            "channel": self.pick(org.channels)["id"],
            "timestamp": f"{t - int(self.rand() * 86400)}.{int(self.rand() * 1e6):06d}",
        }

    def _entity_workflow_v2(self, spec: _Spec, t: int, etype: str) -> dict:
        org = self.org
        obj = self.pick(org.workflows_v2).copy()
        obj["step_configuration"] = copy.deepcopy(obj["step_configuration"])
        if self.rand() < 0.3:
            obj["template_id"] = self.pick(org.templates)["id"]
        if spec.action == "workflow_trigger_suspicious_keyword":
            obj["suspicious_keywords"] = ["password", "wire transfer"]
            obj["trigger_name"] = "On new message"
            obj["trigger_channels"] = [self.pick(org.channels)["id"]]
            obj["trigger_configuration"] = {"type": "event", "event_type": "message_posted"}
        return obj

    def org_sid_suffix(self) -> str:
        rand = self.rand
        return "".join([_ID_ALPHABET[int(rand() * 34)] for _ in range(8)])

    # details: one builder per kind (see _details_kind); _ABSENT leaves the key out

    def user_ids(self, lo: int, hi: int) -> list[str]:
        users = self.org.users
        return [users[int(self.rand() * len(users))][0] for _ in range(lo + int(self.rand() * hi))]

    def pref_value(self, kind: str):
        rand = self.rand
        if kind == "bool":
            return rand() < 0.5
        if kind == "object":
            groups = ["ADMIN", "OWNER", "REGULAR", "RA"]
            value = {"type": groups[: 1 + int(rand() * 3)]}
            if rand() < 0.5:
                value["user"] = self.user_ids(1, 3)
            return value
        if kind == "list":
            return [self.pick(self.org.team_ids) for _ in range(int(rand() * 3))]
        if kind == "number":
            return str(self.pick((1, 7, 30, 90, 365, 0)))
        return self.pick(("enabled", "disabled", "everyone", "admins_only", "owners_only", ""))

    def _details_none(self, spec: _Spec, t: int):
        return _ABSENT if self.rand() < 0.9 else None

    def _details_generic(self, spec: _Spec, t: int):
        r = self.rand()
        if r < 0.55:
            return _ABSENT
        if r < 0.7:
            return None
        return {"type": spec.action.rsplit("_", 1)[-1]}

    def _details_pref(self, spec: _Spec, t: int):
        new = self.pref_value(spec.pref_kind)
        if spec.pref_kind == "bool":
            return {"new_value": new, "previous_value": not new}
        previous = self.pref_value(spec.pref_kind)
        for _ in range(3):
            if previous != new:
                break
            previous = self.pref_value(spec.pref_kind)
        return {"new_value": new, "previous_value": previous}

    def _details_anomaly(self, spec: _Spec, t: int):
        rand = self.rand
        detected_after = 1 + int(rand() * 1800)
        reasons = sorted({self.pick(_ANOMALY_REASONS) for _ in range(1 + int(rand() * 3))})
        return {
            "action_timestamp": (t - detected_after) * 1_000_000 + int(rand() * 1_000_000),
            "location": self.pick(_CITIES),
            "ip_address": _random_ip(self.rng),
            "previous_ip_address": "" if rand() < 0.3 else _random_ip(self.rng),
            "ua": self.pick(_USER_AGENTS),
            "previous_ua": "" if rand() < 0.3 else self.pick(_USER_AGENTS),
            "reason": reasons,
            "asn": 1000 + int(rand() * 60000),
        }

    def _details_bulk_users(self, spec: _Spec, t: int):
        ok = self.user_ids(1, 6)
        failed = self.user_ids(0, 2) if self.rand() < 0.2 else []
        if self.rand() < 0.5:
            return {
                "succeeded_users": json.dumps(ok, separators=(",", ":")),
                "failed_users": json.dumps(failed, separators=(",", ":")),
            }
        return {"succeeded_users": ok, "failed_users": failed}

    def _details_app_install(self, spec: _Spec, t: int):
        org = self.org
        rand = self.rand
        return {
            "is_internal_integration": rand() < 0.2,
            "app_owner_id": self.pick(org.users)[0],
            "scopes": list(self.pick(org.apps)["scopes"]),
            "bot_scopes": ["chat:write", "commands"],
            "granular_bot_token": rand() < 0.8,
            "is_token_rotation_enabled_app": rand() < 0.1,
        }

    def _details_app_scopes(self, spec: _Spec, t: int):
        scopes = self.pick(self.org.apps)["scopes"]
        return {
            "new_scopes": [*scopes, "files:read"],
            "previous_scopes": list(scopes),
            "granular_bot_token": True,
        }

    def _details_rename(self, spec: _Spec, t: int):
        return {"new_value": f"renamed-{int(self.rand() * 999)}", "previous_value": "old-name"}

    def _details_export(self, spec: _Spec, t: int):
        start = t - 86400 * (1 + int(self.rand() * 30))
        return {
            "export_type": self.pick(("standard", "full", "channels", "users")),
            "export_start_ts": str(start),
            "export_end_ts": str(t - 60),
        }

    def _details_inviter(self, spec: _Spec, t: int):
        if self.rand() < 0.6:
            return _ABSENT
        return {"inviter": self.user_obj(self.pick(self.org.users))}

    def _details_kicker(self, spec: _Spec, t: int):
        if self.rand() < 0.6:
            return _ABSENT
        return {"kicker": self.user_obj(self.pick(self.org.users))}

    def _details_session_reset(self, spec: _Spec, t: int):
        rand = self.rand
        return {"mobile_only": rand() < 0.2, "web_only": rand() < 0.2, "non_sso_only": False}

    def _details_expires_on(self, spec: _Spec, t: int):
        return {"expires_on": t + 86400 * (7 + int(self.rand() * 90))}

    def _details_login_failed(self, spec: _Spec, t: int):
        return {"reason": self.pick(("invalid_password", "sso_error", "two_factor_failed"))}

    def _details_shared_invite(self, spec: _Spec, t: int):
        return {
            "invite_id": "I0" + self.org_sid_suffix(),
            "external_organization_id": "E0" + self.org_sid_suffix(),
            "external_organization_name": "Partner Co",
            "channel_id": self.pick(self.org.channels)["id"],
        }

    def _details_huddle(self, spec: _Spec, t: int):
        return {"channel_id": self.pick(self.org.channels)["id"]}

    def _details_message(self, spec: _Spec, t: int):
        return {"channel": self.pick(self.org.channels)["id"]}

    def _details_canvas(self, spec: _Spec, t: int):
        r = self.rand()
        if r < 0.5:
            return _ABSENT
        channel = self.pick(self.org.channels)["id"]
        return {"is_channel_canvas": r < 0.7, "linked_channel_id": channel}

    def entry(self, t: int, spec: _Spec, actor: dict | None, u: tuple | None) -> dict:
        if actor is None:
            actor, u = self.actor(spec.actor)
        entry = {
            "id": self.entry_id(),
            "date_create": t,
            "action": spec.action,
            "actor": actor,
            "entity": self.entity(spec, t),
            "context": self.context(u, spec),
        }
        details = self.detail_builders[spec.details](spec, t)
        if details is not _ABSENT:
            if details is not None and self.rand() < 0.02:
                key, value = self.pick(_UNKNOWN_DETAIL_KEYS)
                details[key] = copy.deepcopy(value)
            entry["details"] = details
        return entry


def hour_volume(seed: int, hour_start: int, events_per_hour: int) -> int:
    """hour_volume returns how many entries ``generate_hour`` yields for that hour."""
    _check_hour(hour_start)
    rng = random.Random(f"audit-pipeline/volume/{seed}/{hour_start}")
    return round(events_per_hour * diurnal_factor(hour_start) * (0.85 + 0.3 * rng.random()))


def _check_hour(hour_start: int) -> None:
    if isinstance(hour_start, bool) or not isinstance(hour_start, int):
        raise TypeError(f"hour_start must be int Unix seconds, got {type(hour_start).__name__}")
    if hour_start % HOUR:
        raise ValueError(f"hour_start must be aligned to a UTC hour, got {hour_start}")


def generate_hour(
    seed: int,
    hour_start: int,
    events_per_hour: int,
    *,
    late_fraction: float = 0.0,
) -> HourEntries:
    """generate_hour returns the entries of ``[hour_start, hour_start + 3600)``, oldest first.

    Entries sharing a second keep their generation order; ``late_ids`` names the
    ``late_fraction`` of them an emulator should reveal only later.
    """
    _check_hour(hour_start)
    if events_per_hour < 0:
        raise ValueError(f"events_per_hour must be >= 0, got {events_per_hour}")
    if not 0.0 <= late_fraction <= 1.0:
        raise ValueError(f"late_fraction must be within [0, 1], got {late_fraction}")
    n = hour_volume(seed, hour_start, events_per_hour)
    if n == 0:
        return HourEntries([], hour_start, frozenset())
    specs, cumulative, by_name = _action_table()
    total = cumulative[-1]
    hour = _Hour(seed, hour_start)
    rand = hour.rand

    # (second, burst index or -1), sorted stably by second below.
    plan: list[tuple[int, int]] = []
    bursts: list[tuple[_Spec, dict, tuple | None]] = []
    remaining = n
    r = rand()
    for _ in range(0 if r < 0.45 else 1 if r < 0.8 else 2 if r < 0.95 else 3):
        r = rand()
        size = (
            12 + int(rand() * 50) if r < 0.75 else
            100 + int(rand() * 300) if r < 0.97 else
            1000 + int(rand() * 1500)
        )  # fmt: skip
        size = min(size, remaining // 2)
        if size < 2:
            break
        second = hour_start + int(rand() * HOUR)
        spec = by_name[hour.pick(_BURST_ACTIONS)]
        actor, u = hour.actor("admin" if spec.actor == "user" and rand() < 0.5 else spec.actor)
        bursts.append((spec, actor, u))
        plan.extend([(second, len(bursts) - 1)] * size)
        remaining -= size
    if remaining >= 8:
        for second in (hour_start, hour_start + HOUR - 1):
            edge = 1 + (rand() < 0.3)
            plan.extend([(second, -1)] * edge)
            remaining -= edge
    plan.extend((hour_start + int(rand() * HOUR), -1) for _ in range(remaining))
    plan.sort(key=lambda item: item[0])

    entries = []
    append = entries.append
    entry = hour.entry
    for second, burst in plan:
        if burst < 0:
            append(entry(second, specs[bisect_right(cumulative, rand() * total)], None, None))
        else:
            spec, actor, u = bursts[burst]
            append(entry(second, spec, {"type": "user", "user": dict(actor["user"])}, u))

    late_ids: frozenset[str] = frozenset()
    if late_fraction > 0.0:
        late_rng = random.Random(f"audit-pipeline/late/{seed}/{hour_start}").random
        late_ids = frozenset(e["id"] for e in entries if late_rng() < late_fraction)
    return HourEntries(entries, hour_start, late_ids)


def generate_range(
    seed: int,
    start: int,
    end: int,
    events_per_hour: int,
    *,
    late_fraction: float = 0.0,
) -> Iterator[dict]:
    """generate_range yields the entries with ``start <= date_create < end``, oldest first.

    Hours are generated one at a time, so a year costs memory for one hour only.
    """
    if end < start:
        raise ValueError(f"end ({end}) is before start ({start})")
    hour_start = start - start % HOUR
    while hour_start < end:
        for entry in generate_hour(seed, hour_start, events_per_hour, late_fraction=late_fraction):
            if start <= entry["date_create"] < end:
                yield entry
        hour_start += HOUR
