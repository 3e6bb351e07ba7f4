"""A second, deliberately naive implementation of DESIGN.md §1 "Emitted events", to check `worker.core` against.

Written from the spec, not from `worker/core/rules.py`; where the spec leaves a choice open, the model follows
what the core documents (docstrings, comments) rather than what its code does:
- each device field keeps its newest fact, ordered by `(Enode timestamp, value)` (null sorts as "");
- `plugged_in_at_home` occurred at the newest of the three facts it rests on; `unplugged_from_home` at the
  time of the fact that ended it, or the deletion's time;
- a deleted vehicle or charger is forgotten and later observations about it are ignored;
- a terminal action (CONFIRMED, FAILED, CANCELLED) is acted on once: a repeat changes nothing while the
  action is remembered, i.e. while the newest receipt second of its terminal updates is at most
  `memory_seconds` before the newest receipt second of any terminal update of its user (receipt times are
  kept to the second); a forgotten action is acted on again;
- an action on a deleted vehicle still yields `control.failed` naming it, with `sequence` and
  `consecutiveFailures` null (the vehicle is no longer tracked); one naming an unseen vehicle starts tracking it;
- `control.failed` carries the vehicle's home `locationId` while it is at home (DESIGN.md lists no location
  for it: reported to the lead as a deviation).

The model is fed observations in order (`ReferenceModel.feed`) and returns `Expected` tuples: everything an
emitted event says except its id (ids are checked by their own properties).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from worker.core import (
    ActionState,
    ActionUpdated,
    ChargerObserved,
    DeviceDeleted,
    EmittedEvent,
    Fact,
    Observation,
    VehicleObserved,
)

PLUGGED_IN = "vehicle.plugged_in_at_home"
UNPLUGGED = "vehicle.unplugged_from_home"
FAILED = "control.failed"
STREAK = "control.failure_streak"
STREAK_LENGTH = 10
_FAILURE_CANCELLATIONS = ("FAILED_PRECONDITION", "NOT_FOUND")
_CONTROL_DATA_KEYS = ("actionId", "kind", "targetType", "targetId", "state", "failureReason",
                      "consecutiveFailures")


class Expected(NamedTuple):
    type: str
    user_id: str
    vehicle_id: str | None
    charger_id: str | None
    location_id: str | None
    occurred_at: int
    sequence: int | None
    data: tuple[tuple[str, Any], ...]  # the data fields DESIGN.md names for this type, sorted


def observed(event: EmittedEvent) -> Expected:
    """The core's event in the model's terms (data narrowed to the fields DESIGN.md specifies)."""
    kind = event.type.value
    keys = {UNPLUGGED: ("reason",), FAILED: _CONTROL_DATA_KEYS}.get(kind, ())
    data = tuple(sorted((key, _freeze(event.data.get(key))) for key in keys))
    return Expected(kind, event.user_id, event.vehicle_id, event.charger_id, event.location_id,
                    event.occurred_at_ms, event.sequence, data)


def _freeze(value: Any) -> Any:
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def _newer(new: Fact | None, old: Fact | None) -> bool:
    if new is None:
        return False
    return old is None or (new.at, new.value or "") > (old.at, old.value or "")


def _value(fact: Fact | None) -> str | None:
    return None if fact is None else fact.value


@dataclass
class _Vehicle:
    plug: Fact | None = None
    location: Fact | None = None
    home: tuple[str, str] | None = None  # (charger, location) last announced as at home
    sequence: int = 0
    failures: int = 0
    streak_reported: bool = False


@dataclass
class _Charger:
    plug: Fact | None = None
    location: Fact | None = None


def _learn(device: _Vehicle | _Charger, obs: VehicleObserved | ChargerObserved) -> None:
    """Each field keeps its newest fact."""
    if _newer(obs.plug, device.plug):
        device.plug = obs.plug
    if _newer(obs.location, device.location):
        device.location = obs.location


@dataclass
class _User:
    vehicles: dict[str, _Vehicle] = field(default_factory=dict)
    chargers: dict[str, _Charger] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    finished_actions: dict[str, int] = field(default_factory=dict)  # action id -> newest receipt second
    newest_receipt: int = 0  # of any terminal action update


_TERMINAL = (ActionState.CONFIRMED, ActionState.FAILED, ActionState.CANCELLED)


class ReferenceModel:
    def __init__(self, memory_seconds: int = 72 * 3600) -> None:
        self._users: dict[str, _User] = {}
        self._memory_seconds = memory_seconds

    def is_repeat(self, obs: ActionUpdated) -> bool:
        """Whether `obs`, fed next, is a terminal update of an action still remembered (so it is ignored)."""
        user = self._users.get(obs.user_id)
        if user is None or obs.state not in _TERMINAL or obs.action_id not in user.finished_actions:
            return False
        return user.finished_actions[obs.action_id] >= user.newest_receipt - self._memory_seconds

    def feed(self, obs: Observation) -> list[Expected]:
        user = self._users.setdefault(obs.user_id, _User())
        out: list[Expected] = []
        if isinstance(obs, VehicleObserved):
            self._vehicle(user, obs, out)
        elif isinstance(obs, ChargerObserved):
            self._charger(user, obs, out)
        elif isinstance(obs, DeviceDeleted):
            self._deleted(user, obs, out)
        else:
            self._action(user, obs, out)
        return out

    # --- at home --------------------------------------------------------------------------------------

    def _vehicle(self, user: _User, obs: VehicleObserved, out: list[Expected]) -> None:
        if obs.vehicle_id not in user.deleted:
            _learn(user.vehicles.setdefault(obs.vehicle_id, _Vehicle()), obs)
            self._settle(user, obs.user_id, out)

    def _charger(self, user: _User, obs: ChargerObserved, out: list[Expected]) -> None:
        if obs.charger_id not in user.deleted:
            _learn(user.chargers.setdefault(obs.charger_id, _Charger()), obs)
            self._settle(user, obs.user_id, out)

    def _deleted(self, user: _User, obs: DeviceDeleted, out: list[Expected]) -> None:
        if obs.device_id in user.deleted:
            return
        user.deleted.add(obs.device_id)
        if obs.device == "vehicle":
            vehicle = user.vehicles.pop(obs.device_id, None)
            if vehicle is not None and vehicle.home is not None:
                self._emit(out, obs.user_id, obs.device_id, vehicle, UNPLUGGED, vehicle.home, obs.at,
                           (("reason", "vehicle_deleted"),))
            return
        user.chargers.pop(obs.device_id, None)
        for vid, vehicle in sorted(user.vehicles.items()):
            if vehicle.home is not None and vehicle.home[0] == obs.device_id:
                self._emit(out, obs.user_id, vid, vehicle, UNPLUGGED, vehicle.home, obs.at,
                           (("reason", "charger_deleted"),))
                vehicle.home = None

    def _at_home(self, user: _User, vehicle: _Vehicle) -> tuple[str, str] | None:
        charger_id, location_id = _value(vehicle.plug), _value(vehicle.location)
        charger = user.chargers.get(charger_id or "")
        if charger_id is None or location_id is None or charger is None:
            return None
        return (charger_id, location_id) if _value(charger.location) == location_id else None

    def _settle(self, user: _User, user_id: str, out: list[Expected]) -> None:
        for vid, vehicle in sorted(user.vehicles.items()):
            now = self._at_home(user, vehicle)
            if now == vehicle.home:
                continue
            if vehicle.home is not None:
                reason, at = self._why_not_home(user, vehicle, vehicle.home)
                self._emit(out, user_id, vid, vehicle, UNPLUGGED, vehicle.home, at, (("reason", reason),))
            if now is not None:
                facts = (vehicle.plug, vehicle.location, user.chargers[now[0]].location)
                at = max(fact.at for fact in facts if fact is not None)
                self._emit(out, user_id, vid, vehicle, PLUGGED_IN, now, at, ())
            vehicle.home = now

    def _why_not_home(self, user: _User, vehicle: _Vehicle, home: tuple[str, str]) -> tuple[str, int]:
        charger_id, location_id = home
        if vehicle.plug is not None and vehicle.plug.value != charger_id:
            return "unplugged", vehicle.plug.at
        if vehicle.location is not None and vehicle.location.value != location_id:
            return "location_changed", vehicle.location.at
        location = user.chargers[charger_id].location
        assert location is not None, "at home ended without a cause"
        return "charger_location_changed", location.at

    # --- control failures -----------------------------------------------------------------------------

    def _action(self, user: _User, obs: ActionUpdated, out: list[Expected]) -> None:
        if obs.state not in _TERMINAL:
            return
        repeat = self.is_repeat(obs)
        second = obs.received_at // 1000
        user.finished_actions[obs.action_id] = max(second, user.finished_actions.get(obs.action_id, second))
        user.newest_receipt = max(user.newest_receipt, second)
        if repeat:
            return
        vid, charger_id = self._concerned(user, obs)
        tracked = vid is not None and vid not in user.deleted  # a deleted vehicle is named, not counted
        vehicle = user.vehicles.setdefault(vid, _Vehicle()) if tracked and vid is not None else None
        failed = obs.state is ActionState.FAILED or (
            obs.state is ActionState.CANCELLED and obs.failure_type in _FAILURE_CANCELLATIONS)
        if obs.state is ActionState.CONFIRMED and vehicle is not None:
            vehicle.failures, vehicle.streak_reported = 0, False
        if not failed:
            return
        if vehicle is not None:
            vehicle.failures += 1
        reason = None if obs.failure_type is None else {"type": obs.failure_type, "detail": obs.failure_detail}
        data = {"actionId": obs.action_id, "kind": obs.action_kind, "targetType": obs.target_type,
                "targetId": obs.target_id, "state": obs.state.value, "failureReason": reason,
                "consecutiveFailures": None if vehicle is None else vehicle.failures}
        frozen = tuple(sorted((key, _freeze(value)) for key, value in data.items()))
        if vehicle is None or vid is None:
            out.append(Expected(FAILED, obs.user_id, vid, charger_id, None, obs.at, None, frozen))
            return
        home_location = vehicle.home[1] if vehicle.home is not None else None
        self._emit(out, obs.user_id, vid, vehicle, FAILED, (charger_id, home_location), obs.at, frozen)
        if vehicle.failures >= STREAK_LENGTH and not vehicle.streak_reported:
            vehicle.streak_reported = True
            self._emit(out, obs.user_id, vid, vehicle, STREAK, (None, None), obs.at, ())

    def _concerned(self, user: _User, obs: ActionUpdated) -> tuple[str | None, str | None]:
        """The vehicle an action is about, and the charger when known."""
        if obs.target_type == "vehicle":
            vehicle = user.vehicles.get(obs.target_id)
            return obs.target_id, None if vehicle is None else _value(vehicle.plug)
        charger = user.chargers.get(obs.target_id)
        plugged = _value(charger.plug) if charger is not None else None
        if plugged is None:
            plugged = next((vid for vid, v in sorted(user.vehicles.items()) if _value(v.plug) == obs.target_id),
                           None)
        return plugged, obs.target_id

    def _emit(self, out: list[Expected], user_id: str, vid: str, vehicle: _Vehicle, kind: str,
              ids: tuple[str | None, str | None], at: int, data: tuple[tuple[str, Any], ...]) -> None:
        vehicle.sequence += 1
        out.append(Expected(kind, user_id, vid, ids[0], ids[1], at, vehicle.sequence, data))
