"""Hypothesis strategies for observation logs: plausible Enode histories of a few users, in time order.

A log is what `decode_event` would make of a stream of webhooks: vehicles plugging into and out of their
user's chargers (each side reported by its own event, the charger's mirror sometimes missing), vehicles
moving between the user's 1-3 locations, chargers given a location late or never, chargers reporting on
their own which vehicle (or none) is plugged in, devices deleted and linked again under their id, START
and STOP actions reaching every state with every failure type (bursts of failures included, so that
streaks of ten happen), and redeliveries of earlier observations. Every device field's Enode timestamp
strictly increases each time the field changes; an unchanged field is re-reported with its old timestamp.

Every observation carries its receipt time (`received_at`): up to `MAX_DELAY_MS` after its Enode time, and
a redelivery is received again later (the same observation with a new receipt time). A log spans a few
hours at most, well inside the default action memory; tests that want actions forgotten pass a shorter one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hypothesis import strategies as st
from msgspec.structs import replace

from worker.core import (
    ActionState,
    ActionUpdated,
    ChargerObserved,
    DeviceDeleted,
    Fact,
    Observation,
    VehicleObserved,
)

Kind = Literal["vehicle", "charger"]
T0 = 1_741_975_325_000  # 2025-03-14T18:02:05Z
MAX_DELAY_MS = 120_000  # Enode's time -> plugwatch's receipt
FAILURE_TYPES = ("NO_RESPONSE", "FAILED_PRECONDITION", "UNNECESSARY", "CONFLICT", "REQUESTED_CANCELLATION",
                 "NOT_FOUND")
STEPS = ("plug", "plug", "plug", "plug", "move", "move", "move", "charger_location", "charger_location",
         "charger_location", "report", "delete", "action", "action", "failure_burst", "redeliver", "redeliver",
         "charger_plug", "charger_plug", "charger_plug", "relink")


@dataclass
class _Device:
    plug: Fact | None = None
    location: Fact | None = None
    alive: bool = True


@dataclass
class _User:
    user_id: str
    vehicles: dict[str, _Device]
    chargers: dict[str, _Device]
    locations: list[str]
    actions: int = 0


@dataclass
class _Log:
    draw: st.DrawFn
    clock: int = T0
    entries: list[Observation] = field(default_factory=list)

    def tick(self, most: int = 90_000) -> int:
        self.clock += self.draw(st.integers(1, most))
        return self.clock

    def received(self) -> int:
        """When plugwatch receives what is logged now."""
        return self.clock + self.draw(st.integers(0, MAX_DELAY_MS))


def _user(draw: st.DrawFn, n: int) -> _User:
    uid = f"usr-{n}"
    vehicles = {f"{uid}-v{i}": _Device() for i in range(draw(st.integers(1, 3)))}
    chargers = {f"{uid}-c{i}": _Device() for i in range(draw(st.integers(1, 2)))}
    return _User(uid, vehicles, chargers, [f"{uid}-home{i}" for i in range(draw(st.integers(1, 3)))])


@st.composite
def observation_logs(draw: st.DrawFn, max_steps: int = 40) -> list[Observation]:
    users = [_user(draw, n) for n in range(draw(st.integers(1, 3)))]
    log = _Log(draw)
    for _ in range(draw(st.integers(1, max_steps))):
        user = draw(st.sampled_from(users))
        step = draw(st.sampled_from(STEPS))
        {"plug": _plug, "move": _move, "charger_location": _charger_location, "report": _report,
         "delete": _delete, "action": _action, "failure_burst": _failure_burst,
         "redeliver": _redeliver, "charger_plug": _charger_plug, "relink": _relink}[step](log, user)
    return log.entries


def _alive(devices: dict[str, _Device]) -> list[str]:
    return sorted(d for d, device in devices.items() if device.alive)


def _vehicle_seen(log: _Log, user: _User, vid: str) -> None:
    v = user.vehicles[vid]
    log.entries.append(VehicleObserved(user.user_id, vid, log.clock, v.plug, v.location, log.received()))


def _charger_seen(log: _Log, user: _User, cid: str) -> None:
    c = user.chargers[cid]
    log.entries.append(ChargerObserved(user.user_id, cid, log.clock, c.plug, c.location, log.received()))


def _plug(log: _Log, user: _User) -> None:
    """A vehicle plugs into a free charger of its user, or unplugs (its location may follow the charger's)."""
    vehicles = _alive(user.vehicles)
    if not vehicles:
        return
    vid = log.draw(st.sampled_from(vehicles))
    vehicle = user.vehicles[vid]
    taken = {v.plug.value for v in user.vehicles.values() if v.alive and v.plug is not None}
    free = [c for c in _alive(user.chargers) if c not in taken]
    before = vehicle.plug.value if vehicle.plug is not None else None
    target = log.draw(st.sampled_from([None, *free]))
    if target == before:
        return
    at = log.tick()
    vehicle.plug = Fact(at, target)
    charger_location = user.chargers[target].location if target is not None else None
    if charger_location is not None and charger_location.value and log.draw(st.integers(0, 3)) > 0:
        vehicle.location = Fact(at, charger_location.value)  # Enode infers it from the charger
    _vehicle_seen(log, user, vid)
    for cid, plugged in ((before, None), (target, vid)):  # the chargers' side, when Enode reports it
        if cid is not None and user.chargers[cid].alive and log.draw(st.booleans()):
            user.chargers[cid].plug = Fact(log.tick(5_000), plugged)
            _charger_seen(log, user, cid)


def _charger_plug(log: _Log, user: _User) -> None:
    """Only the charger reports who is plugged in (the vehicles' own reports are late, lost, or disagree).

    It names one of its user's vehicles (a deleted one, or one plugged in elsewhere, included) or nobody;
    the vehicle may follow with its own report of the same plug, at the same moment, later or never.
    """
    chargers = _alive(user.chargers)
    if not chargers:
        return
    used = [v.plug.value for v in user.vehicles.values() if v.plug is not None and v.plug.value in chargers]
    cid = log.draw(st.sampled_from(sorted([*chargers, *used, *used])))  # often one a vehicle is plugged into
    here = user.chargers[cid].location
    place = here.value if here is not None else None
    near = [v for v, d in sorted(user.vehicles.items()) if place and d.location and d.location.value == place]
    vid = log.draw(st.sampled_from([None, *sorted(user.vehicles), *near, *near]))  # often one parked there
    at = log.tick()
    user.chargers[cid].plug = Fact(at, vid)
    _charger_seen(log, user, cid)
    if vid is not None and user.vehicles[vid].alive and log.draw(st.integers(0, 2)) == 0:
        user.vehicles[vid].plug = Fact(log.tick() if log.draw(st.booleans()) else at, cid)
        _vehicle_seen(log, user, vid)


def _relink(log: _Log, user: _User) -> None:
    """A deleted device is linked again under the same id (as after invalidated credentials): new facts."""
    gone: list[tuple[Kind, str]] = [("vehicle", d) for d, v in sorted(user.vehicles.items()) if not v.alive]
    gone += [("charger", d) for d, c in sorted(user.chargers.items()) if not c.alive]
    if not gone:
        return
    kind, device_id = log.draw(st.sampled_from(gone))
    device = (user.vehicles if kind == "vehicle" else user.chargers)[device_id]
    at = log.tick()
    device.alive, device.plug = True, Fact(at, None)
    device.location = Fact(at, log.draw(st.sampled_from([None, *user.locations])))
    (_vehicle_seen if kind == "vehicle" else _charger_seen)(log, user, device_id)


def _move(log: _Log, user: _User) -> None:
    """The vehicle's `location.id` changes: mostly to where one of the user's chargers is."""
    vehicles = _alive(user.vehicles)
    if vehicles:
        vid = log.draw(st.sampled_from(vehicles))
        homes = sorted({c.location.value for c in user.chargers.values() if c.location and c.location.value})
        places = homes if homes and log.draw(st.integers(0, 2)) > 0 else [None, *user.locations]
        user.vehicles[vid].location = Fact(log.tick(), log.draw(st.sampled_from(places)))
        _vehicle_seen(log, user, vid)


def _charger_location(log: _Log, user: _User) -> None:
    chargers = _alive(user.chargers)
    if chargers:
        cid = log.draw(st.sampled_from(chargers))
        places = [*user.locations, *user.locations, None]  # set late, moved, or removed
        user.chargers[cid].location = Fact(log.tick(), log.draw(st.sampled_from(places)))
        _charger_seen(log, user, cid)


def _report(log: _Log, user: _User) -> None:
    """An update about other fields (battery level...): the same facts again, or a bare `:discovered`."""
    devices = [("v", d) for d in _alive(user.vehicles)] + [("c", d) for d in _alive(user.chargers)]
    if not devices:
        return
    kind, device_id = log.draw(st.sampled_from(devices))
    log.tick()
    if log.draw(st.integers(0, 3)) == 0:
        cls = VehicleObserved if kind == "v" else ChargerObserved
        log.entries.append(cls(user.user_id, device_id, log.clock, None, None, log.received()))
    elif kind == "v":
        _vehicle_seen(log, user, device_id)
    else:
        _charger_seen(log, user, device_id)


def _delete(log: _Log, user: _User) -> None:
    devices: list[tuple[Kind, str]] = [("vehicle", d) for d in _alive(user.vehicles)]
    devices += [("charger", d) for d in _alive(user.chargers)]
    if devices:
        kind, device_id = log.draw(st.sampled_from(devices))
        (user.vehicles if kind == "vehicle" else user.chargers)[device_id].alive = False
        log.entries.append(DeviceDeleted(user.user_id, kind, device_id, log.tick(), log.received()))


def _targets(user: _User) -> list[tuple[Kind, str]]:
    """Any device of the user, deleted ones included, and a vehicle plugwatch never heard of."""
    return ([("vehicle", v) for v in sorted(user.vehicles)] + [("charger", c) for c in sorted(user.chargers)]
            + [("vehicle", f"{user.user_id}-unseen")])


def _terminal(draw: st.DrawFn) -> tuple[ActionState, str | None]:
    state = draw(st.sampled_from([ActionState.CONFIRMED, ActionState.FAILED, ActionState.FAILED,
                                  ActionState.CANCELLED, ActionState.CANCELLED, ActionState.UNKNOWN]))
    if state in (ActionState.FAILED, ActionState.CANCELLED):
        return state, draw(st.sampled_from(FAILURE_TYPES if state is ActionState.CANCELLED
                                           else (None, *FAILURE_TYPES)))
    return state, None


def _one_action(log: _Log, user: _User, target: tuple[Kind, str], state: ActionState,
                failure: str | None) -> None:
    user.actions += 1
    action_id = f"{user.user_id}-a{user.actions}"
    kind: Literal["START", "STOP"] = log.draw(st.sampled_from(["START", "STOP"]))
    target_type, target_id = target

    def update(at: int, state: ActionState, failure: str | None) -> ActionUpdated:
        detail = None if failure is None else f"{failure.lower()} detail"
        return ActionUpdated(user.user_id, action_id, target_type, target_id, kind, state, failure, detail, at,
                             log.received())

    if log.draw(st.booleans()):
        log.entries.append(update(log.tick(), ActionState.PENDING, None))
    log.entries.append(update(log.tick(), state, failure))


def _action(log: _Log, user: _User) -> None:
    state, failure = _terminal(log.draw)
    _one_action(log, user, log.draw(st.sampled_from(_targets(user))), state, failure)


def _failure_burst(log: _Log, user: _User) -> None:
    """Many actions on one target, nearly all failing, so that streaks of ten (and their ends) happen."""
    target = log.draw(st.sampled_from(_targets(user)))
    for _ in range(log.draw(st.integers(3, 16))):
        state, failure = log.draw(st.sampled_from([(ActionState.FAILED, None), (ActionState.FAILED, "NO_RESPONSE"),
                                                   (ActionState.CANCELLED, "FAILED_PRECONDITION")] * 3
                                                  + [(ActionState.CONFIRMED, None)]))
        _one_action(log, user, target, state, failure)


def _redeliver(log: _Log, user: _User) -> None:
    """Enode delivers at least once: an earlier observation arrives again, received anew."""
    if log.entries:
        log.entries.append(replace(log.draw(st.sampled_from(log.entries)), received_at=log.received()))
