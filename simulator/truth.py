"""The ground truth: the events plugwatch must emit for an Enode event log fed in order.

Written from DESIGN.md §1 (not from plugwatch's core), as a plain replay over the simulator's own payloads:

* V's `chargeState.pluggedInChargerId` and C's `chargeState.pluggedInVehicleId` are the same pairing seen
  from both ends: a report is news about the device it names too.  V is plugged into C when the newest
  report about V names C and the newest about C names V (`_User.pairs`), so a charger naming car 2 takes
  it from car 1, and a charger naming nobody unplugs whoever was on it.
* *At home* holds for vehicle V when V is plugged into a known charger C, V's `location.id` is L (not null)
  and C's `location.id` is L.  When it becomes true: `plugged_in_at_home`.  When it becomes false:
  `unplugged_from_home` with the previous ids and a reason: `unplugged` (V is no longer plugged into C,
  also when it is another charger: a direct move C1 -> C2 emits unplugged then plugged_in_at_home for C2;
  also when C's report names another vehicle or none), `location_changed` (V's `location.id` changed while
  still on C), `charger_location_changed`, `vehicle_deleted`, `charger_deleted`.  One report can move
  several vehicles: every unplug it causes comes before any plug-in.
* `control.failed` when a START/STOP reaches FAILED, or CANCELLED with FAILED_PRECONDITION or NOT_FOUND.
  The vehicle is the target, or for a charger target the vehicle plugged into it.  `chargerId` is the
  charger target, or for a vehicle target the charger it is plugged into (null if none).
  `consecutiveFailures` counts the vehicle's failures since its last CONFIRMED START/STOP;
  `control.failure_streak` follows the failure that makes it 10.
* `sequence` counts the events emitted per vehicle, from 1.

`occurredAt` (ms) is the timestamp of the observation that caused the event: a vehicle's or a charger's
plug report -> its `chargeState.lastUpdated`; a vehicle's location change -> `location.lastUpdated` (when
one update changes both, the simulator gives them the same value; this replay takes the later); a
charger's location change -> the charger's `location.lastUpdated`; a deletion -> the event's `createdAt`;
an action -> `updatedAt`.  A null timestamp falls back to the event's `createdAt`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.clock import parse_iso

PLUGGED = "vehicle.plugged_in_at_home"
UNPLUGGED = "vehicle.unplugged_from_home"
FAILED = "control.failed"
STREAK = "control.failure_streak"
STREAK_LENGTH = 10
_COUNTED_CANCELLATIONS = frozenset({"FAILED_PRECONDITION", "NOT_FOUND"})


@dataclass(frozen=True)
class Expected:
    """One emitted event as the ground truth states it (the event id is plugwatch's to choose)."""

    type: str
    user_id: str
    vehicle_id: str | None
    charger_id: str | None
    location_id: str | None
    occurred_ms: int
    sequence: int | None
    reason: str | None = None  # data.reason for unplugged_from_home
    state: str | None = None  # data.state, data.kind, data.consecutiveFailures for control.failed
    kind: str | None = None
    consecutive_failures: int | None = None


def from_emitted(event: Mapping[str, Any]) -> Expected:
    """An event plugwatch emitted, in the ground truth's terms (for comparison)."""
    data = event.get("data") or {}
    is_failure = event["type"] == FAILED
    return Expected(
        type=event["type"], user_id=event["userId"], vehicle_id=event.get("vehicleId"),
        charger_id=event.get("chargerId"), location_id=event.get("locationId"),
        occurred_ms=parse_iso(event["occurredAt"]), sequence=event.get("sequence"),
        reason=data.get("reason") if event["type"] == UNPLUGGED else None,
        state=data.get("state") if is_failure else None, kind=data.get("kind") if is_failure else None,
        consecutive_failures=data.get("consecutiveFailures") if is_failure else None,
    )


@dataclass
class _User:
    user_id: str
    out: list[Expected]
    plug: dict[str, str | None] = field(default_factory=dict)  # vehicle -> pluggedInChargerId
    plug_at: dict[str, int] = field(default_factory=dict)  # vehicle -> its chargeState.lastUpdated
    vloc: dict[str, str | None] = field(default_factory=dict)  # vehicle -> location.id
    cloc: dict[str, str | None] = field(default_factory=dict)  # charger -> location.id
    cveh: dict[str, str | None] = field(default_factory=dict)  # charger -> pluggedInVehicleId
    cveh_at: dict[str, int] = field(default_factory=dict)  # charger -> its chargeState.lastUpdated
    # the newest plug report about each device from either side, as (time, the other device or "")
    about_vehicle: dict[str, tuple[int, str]] = field(default_factory=dict)
    about_charger: dict[str, tuple[int, str]] = field(default_factory=dict)
    home: dict[str, tuple[str, str]] = field(default_factory=dict)  # vehicle -> (charger, location)
    sequence: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def emit(self, type_: str, vehicle: str | None, charger: str | None, location: str | None, at: int,
             **data: Any) -> None:
        seq = None
        if vehicle is not None:
            seq = self.sequence[vehicle] = self.sequence.get(vehicle, 0) + 1
        self.out.append(Expected(type_, self.user_id, vehicle, charger, location, at, seq, **data))

    def leave_home(self, vehicle: str, at: int, reason: str) -> None:
        charger, location = self.home.pop(vehicle)
        self.emit(UNPLUGGED, vehicle, charger, location, at, reason=reason)

    def report(self, side: str, device: str, at: int, named: str | None) -> None:
        """A plug report is news about the device and, if it names one, about that device too."""
        mine, theirs = ((self.about_vehicle, self.about_charger) if side == "vehicle"
                        else (self.about_charger, self.about_vehicle))
        mine[device] = max(mine.get(device, (at, "")), (at, named or ""))
        if named:
            theirs[named] = max(theirs.get(named, (at, "")), (at, device))

    def pairs(self) -> dict[str, str]:
        """Vehicle -> charger: paired when the newest report about each names the other."""
        return {vehicle: charger for vehicle, (_, charger) in self.about_vehicle.items()
                if charger and self.about_charger.get(charger, (0, ""))[1] == vehicle}

    def resettle(self, at: int) -> None:
        """Every vehicle again after a report changed at `at`: first who left home, then who arrived."""
        pairs = self.pairs()
        for vehicle, (charger, location) in sorted(self.home.items()):
            if pairs.get(vehicle) != charger:
                self.leave_home(vehicle, at, "unplugged")
            elif self.vloc.get(vehicle) != location:
                self.leave_home(vehicle, at, "location_changed")
            elif self.cloc.get(charger) != location:
                self.leave_home(vehicle, at, "charger_location_changed")
        for vehicle in sorted(self.vloc):
            on, here = pairs.get(vehicle), self.vloc[vehicle]
            if vehicle not in self.home and on is not None and here is not None and self.cloc.get(on) == here:
                self.home[vehicle] = (on, here)
                self.emit(PLUGGED, vehicle, on, here, at)


class Replay:
    """The ground truth, fed incrementally: `feed(event)` returns the events that one Enode event causes."""

    def __init__(self) -> None:
        self._users: dict[str, _User] = {}
        self._out: list[Expected] = []

    def feed(self, event: Mapping[str, Any]) -> list[Expected]:
        start = len(self._out)
        user = event.get("user")
        if not isinstance(user, Mapping):
            return []  # heartbeat, test event
        state = self._users.get(user["id"]) or self._users.setdefault(user["id"], _User(user["id"], self._out))
        name = event["event"]
        created = parse_iso(event["createdAt"])
        if name in ("user:vehicle:discovered", "user:vehicle:updated"):
            _vehicle(state, event["vehicle"], created)
        elif name in ("user:charger:discovered", "user:charger:updated"):
            _charger(state, event["charger"], created)
        elif name == "user:vehicle:deleted":
            _vehicle_deleted(state, event["vehicle"]["id"], created)
        elif name == "user:charger:deleted":
            _charger_deleted(state, event["charger"]["id"], created)
        elif name == "user:vendor-action:updated":
            _action(state, event["vendorAction"], created)
        return self._out[start:]


def expected_events(events: Iterable[Mapping[str, Any]]) -> list[Expected]:
    """Replay an in-order Enode event log; return every event plugwatch must emit, in order."""
    replay = Replay()
    return [expected for event in events for expected in replay.feed(event)]


def _at(obj: Mapping[str, Any] | None, fallback: int) -> int:
    raw = (obj or {}).get("lastUpdated")
    return parse_iso(raw) if raw else fallback


def _vehicle(s: _User, v: Mapping[str, Any], created: int) -> None:
    vid, charge, location = v["id"], v.get("chargeState") or {}, v.get("location") or {}
    new_plug, new_loc, plug_at = charge.get("pluggedInChargerId"), location.get("id"), _at(charge, created)
    plug_changed = vid not in s.plug or new_plug != s.plug[vid] or plug_at != s.plug_at[vid]
    loc_changed = new_loc != s.vloc.get(vid)
    times = ([plug_at] if plug_changed else []) + ([_at(location, created)] if loc_changed else [])
    s.plug[vid], s.plug_at[vid], s.vloc[vid] = new_plug, plug_at, new_loc
    s.report("vehicle", vid, plug_at, new_plug)
    if times:
        s.resettle(max(times))


def _charger(s: _User, c: Mapping[str, Any], created: int) -> None:
    cid, charge, location = c["id"], c.get("chargeState") or {}, c.get("location") or {}
    new_vehicle, new_loc, plug_at = charge.get("pluggedInVehicleId"), location.get("id"), _at(charge, created)
    plug_changed = cid not in s.cveh or new_vehicle != s.cveh[cid] or plug_at != s.cveh_at[cid]
    loc_changed = cid not in s.cloc or new_loc != s.cloc[cid]
    times = ([plug_at] if plug_changed else []) + ([_at(location, created)] if loc_changed else [])
    s.cveh[cid], s.cveh_at[cid], s.cloc[cid] = new_vehicle, plug_at, new_loc
    s.report("charger", cid, plug_at, new_vehicle)
    if times:
        s.resettle(max(times))


def _vehicle_deleted(s: _User, vid: str, created: int) -> None:
    if vid in s.home:
        s.leave_home(vid, created, "vehicle_deleted")
    for known in (s.plug, s.plug_at, s.vloc, s.about_vehicle):
        known.pop(vid, None)
    s.resettle(created)  # a charger it held may go to another vehicle's report


def _charger_deleted(s: _User, cid: str, created: int) -> None:
    for vid, (charger, _location) in list(s.home.items()):
        if charger == cid:
            s.leave_home(vid, created, "charger_deleted")
    for known in (s.cloc, s.cveh, s.cveh_at, s.about_charger):
        known.pop(cid, None)
    s.resettle(created)


def _action(s: _User, action: Mapping[str, Any], created: int) -> None:
    if action.get("kind") not in ("START", "STOP") or action.get("targetType") not in ("vehicle", "charger"):
        return
    state, reason = action.get("state"), (action.get("failureReason") or {}).get("type")
    target = action["targetId"]
    at = parse_iso(action["updatedAt"]) if action.get("updatedAt") else created
    pairs = s.pairs()
    if action["targetType"] == "vehicle":
        vehicle, charger = target, pairs.get(target)
    else:
        charger = target
        vehicle = next((v for v, c in pairs.items() if c == target), None)
    if state == "CONFIRMED" and vehicle is not None:
        s.failures[vehicle] = 0
    if not (state == "FAILED" or (state == "CANCELLED" and reason in _COUNTED_CANCELLATIONS)):
        return
    count = None
    if vehicle is not None:
        count = s.failures[vehicle] = s.failures.get(vehicle, 0) + 1
    s.emit(FAILED, vehicle, charger, None, at, state=state, kind=action["kind"], consecutive_failures=count)
    if count == STREAK_LENGTH:
        s.emit(STREAK, vehicle, None, None, at)


def failing_actions(events: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(user id, action id) of every START/STOP action of the log that ended as a failure: each must yield
    exactly one `control.failed`, whatever the order the log arrives in."""
    out = set()
    for event in events:
        action = event.get("vendorAction") if event.get("event") == "user:vendor-action:updated" else None
        if not isinstance(action, Mapping) or action.get("kind") not in ("START", "STOP") \
                or action.get("targetType") not in ("vehicle", "charger"):
            continue
        reason = (action.get("failureReason") or {}).get("type")
        if action.get("state") == "FAILED" or (action.get("state") == "CANCELLED" and reason in _COUNTED_CANCELLATIONS):
            out.add((event["user"]["id"], action["id"]))
    return out
