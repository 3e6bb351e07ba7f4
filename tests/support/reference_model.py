"""A second, deliberately naive implementation of DESIGN.md §1 "Emitted events", to check `worker.core` against.

Written from the spec, not from `worker/core/rules.py`; where the spec leaves a choice open, the model follows
what the core documents (docstrings, comments) rather than what its code does:
- each device field keeps its newest fact, ordered by `(Enode timestamp, value)` (null sorts as "");
- the vehicle's `pluggedInChargerId` and the charger's `pluggedInVehicleId` are two reports of one pairing:
  the newest report of either side decides (`_pairing`), so a charger holds one vehicle at most;
- `plugged_in_at_home` occurred at the newest of the facts it rests on (both plug reports, both locations);
  `unplugged_from_home` at the time of the report that ended it, or the deletion's time; within one
  observation every unplug comes before any plug-in;
- a deletion drops what the device reported up to it (a device with nothing newer is forgotten); later
  observations count only with facts newer than the deletion (the device was linked again);
- a terminal action (CONFIRMED, FAILED, CANCELLED) is acted on once: a repeat changes nothing while the
  action is remembered, i.e. while the newest receipt second of its terminal updates is at most
  `memory_seconds` before the newest receipt second of any terminal update of its user (receipt times are
  kept to the second); a forgotten action is acted on again;
- an action on a deleted vehicle still yields `control.failed` naming it, with `sequence` and
  `consecutiveFailures` null (the vehicle is no longer tracked); one targeting an unseen vehicle starts
  tracking it (an action on a charger paired with a vehicle never observed only names it);
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


def _learn(device: _Vehicle | _Charger, plug: Fact | None, location: Fact | None) -> None:
    """Each field keeps its newest fact."""
    if _newer(plug, device.plug):
        device.plug = plug
    if _newer(location, device.location):
        device.location = location


@dataclass
class _User:
    vehicles: dict[str, _Vehicle] = field(default_factory=dict)
    chargers: dict[str, _Charger] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)  # device id -> time of its newest deletion
    finished_actions: dict[str, int] = field(default_factory=dict)  # action id -> newest receipt second
    newest_receipt: int = 0  # of any terminal action update

    def after_deletion(self, device_id: str, fact: Fact | None) -> Fact | None:
        """A fact reported at or before the device's deletion does not count."""
        deleted_at = self.deleted.get(device_id)
        return fact if fact is None or deleted_at is None or fact.at > deleted_at else None


_TERMINAL = (ActionState.CONFIRMED, ActionState.FAILED, ActionState.CANCELLED)


def _pairing(user: _User) -> dict[tuple[str, str], tuple[str | None, int]]:
    """Who is plugged into whom, from each device's newest plug report, vehicles' and chargers' alike.

    The newest report settles its device and the one it names; a report whose device is already settled is
    skipped; one naming a device already settled (by a newer report) settles its own device as plugged into
    nothing, as of that newer report. Ties: vehicles' reports first, then by id. Keys: ("vehicle", id) and
    ("charger", id); values: (partner, the time of the report that settled it).
    """
    claims = [(fact.at, "vehicle", vid, fact.value) for vid, v in user.vehicles.items() if (fact := v.plug)]
    claims += [(fact.at, "charger", cid, fact.value) for cid, c in user.chargers.items() if (fact := c.plug)]
    claims.sort(key=lambda claim: (-claim[0], claim[1] != "vehicle", claim[2]))
    settled: dict[tuple[str, str], tuple[str | None, int]] = {}
    for at, side, device, names in claims:
        me = (side, device)
        if me in settled:
            continue
        them = ("charger" if side == "vehicle" else "vehicle", names or "")
        if names is None:
            settled[me] = (None, at)
        elif them in settled:
            settled[me] = (None, settled[them][1])
        else:
            settled[me], settled[them] = (names, at), (device, at)
    return settled


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
            self._observed(user, obs, obs.vehicle_id, user.vehicles, out)
        elif isinstance(obs, ChargerObserved):
            self._observed(user, obs, obs.charger_id, user.chargers, out)
        elif isinstance(obs, DeviceDeleted):
            self._deleted(user, obs, out)
        else:
            self._action(user, obs, out)
        return out

    # --- at home --------------------------------------------------------------------------------------

    def _observed(self, user: _User, obs: VehicleObserved | ChargerObserved, device_id: str,
                  devices: dict[str, Any], out: list[Expected]) -> None:
        plug, location = user.after_deletion(device_id, obs.plug), user.after_deletion(device_id, obs.location)
        if device_id in user.deleted and plug is None and location is None:
            return  # only what it reported before its deletion
        if device_id not in devices:
            devices[device_id] = _Vehicle() if isinstance(obs, VehicleObserved) else _Charger()
        _learn(devices[device_id], plug, location)
        self._settle(user, obs.user_id, out, None)

    def _deleted(self, user: _User, obs: DeviceDeleted, out: list[Expected]) -> None:
        if obs.at <= user.deleted.get(obs.device_id, obs.at - 1):
            return
        user.deleted[obs.device_id] = obs.at
        devices: dict[str, Any] = user.vehicles if obs.device == "vehicle" else user.chargers
        device = devices.get(obs.device_id)
        if device is not None:
            device.plug = user.after_deletion(obs.device_id, device.plug)
            device.location = user.after_deletion(obs.device_id, device.location)
        self._settle(user, obs.user_id, out, obs)
        if device is not None and device.plug is None and device.location is None:
            del devices[obs.device_id]

    def _at_home(self, user: _User, vid: str, pairs: dict[tuple[str, str], tuple[str | None, int]]
                 ) -> tuple[str, str] | None:
        charger_id, _ = pairs.get(("vehicle", vid), (None, 0))
        location_id = _value(user.vehicles[vid].location)
        charger = user.chargers.get(charger_id or "")
        if charger_id is None or location_id is None or charger is None:
            return None
        return (charger_id, location_id) if _value(charger.location) == location_id else None

    def _settle(self, user: _User, user_id: str, out: list[Expected], deleted: DeviceDeleted | None) -> None:
        """Every vehicle again: first whoever is no longer at home, then whoever now is."""
        pairs = _pairing(user)
        now = {vid: self._at_home(user, vid, pairs) for vid in user.vehicles}
        for vid, vehicle in sorted(user.vehicles.items()):
            if vehicle.home is not None and now[vid] != vehicle.home:
                reason, at = self._why_not_home(user, vid, vehicle.home, pairs, deleted)
                self._emit(out, user_id, vid, vehicle, UNPLUGGED, vehicle.home, at, (("reason", reason),))
                vehicle.home = None
        for vid, vehicle in sorted(user.vehicles.items()):
            home = now[vid]
            if home is not None and home != vehicle.home:
                charger = user.chargers[home[0]]
                facts = (vehicle.plug, vehicle.location, charger.plug, charger.location)
                at = max(fact.at for fact in facts if fact is not None)
                self._emit(out, user_id, vid, vehicle, PLUGGED_IN, home, at, ())
                vehicle.home = home

    def _why_not_home(self, user: _User, vid: str, home: tuple[str, str],
                      pairs: dict[tuple[str, str], tuple[str | None, int]], deleted: DeviceDeleted | None
                      ) -> tuple[str, int]:
        charger_id, location_id = home
        if deleted is not None and (deleted.device, deleted.device_id) in (("vehicle", vid), ("charger", charger_id)):
            return f"{deleted.device}_deleted", deleted.at
        vehicle_side, charger_side = pairs.get(("vehicle", vid)), pairs.get(("charger", charger_id))
        if vehicle_side is None or vehicle_side[0] != charger_id:  # a newer report of either side says otherwise
            return "unplugged", max(side[1] for side in (vehicle_side, charger_side) if side is not None)
        location = user.vehicles[vid].location
        if location is not None and location.value != location_id:
            return "location_changed", location.at
        charger_location = user.chargers[charger_id].location
        assert charger_location is not None, "at home ended without a cause"
        return "charger_location_changed", charger_location.at

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
        vehicle = user.vehicles.get(vid or "")
        if vehicle is None and vid is not None and obs.target_type == "vehicle" and vid not in user.deleted:
            vehicle = user.vehicles[vid] = _Vehicle()  # unseen: tracked from now on; a deleted one is only named
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
        """The vehicle an action is about, and the charger when known: the target and whom it is paired with."""
        pairs = _pairing(user)
        if obs.target_type == "vehicle":
            return obs.target_id, pairs.get(("vehicle", obs.target_id), (None, 0))[0]
        return pairs.get(("charger", obs.target_id), (None, 0))[0], obs.target_id

    def _emit(self, out: list[Expected], user_id: str, vid: str, vehicle: _Vehicle, kind: str,
              ids: tuple[str | None, str | None], at: int, data: tuple[tuple[str, Any], ...]) -> None:
        vehicle.sequence += 1
        out.append(Expected(kind, user_id, vid, ids[0], ids[1], at, vehicle.sequence, data))
