"""Seeded stories for N users: every pairing situation the issue lists, mixed at random per user.

A user's story depends only on (seed, user index), never on how many users are simulated, so the first
ten users of a 1,000-user scenario are the ten users of a 10-user scenario. `long_streaks=True` ends every
story with a long failure streak per vehicle (`LONG_STREAK` counted failures in a row, more than the
ten that make a streak): the stories before that end are the same as without it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass

from simulator.actions import Outcome, play_action
from simulator.clock import BASE_MS, parse_iso
from simulator.devices import Charger, Place, Vehicle
from simulator.payloads import Event
from simulator.world import UserWorld


@dataclass(frozen=True)
class Scenario:
    """The Enode events of all users, merged by `createdAt` (each user's events stay in their order)."""

    seed: int
    users: int
    events: tuple[Event, ...]
    locations: tuple[tuple[str, Place], ...] = ()  # (user id, Location) for every Location the users have


LONG_STREAK = (12, 16)  # counted failures per vehicle in a long streak


def build_scenario(users: int, seed: int = 1, *, long_streaks: bool = False) -> Scenario:
    worlds = [user_world(seed, index, long_streaks=long_streaks) for index in range(users)]
    keyed = ([(parse_iso(e["createdAt"]), index, pos, e) for pos, e in enumerate(world.events)]
             for index, world in enumerate(worlds))
    merged = tuple(item[3] for item in heapq.merge(*keyed))
    return Scenario(seed, users, merged, tuple((w.user_id, place) for w in worlds for place in w.locations))


def user_story(seed: int, index: int, *, long_streaks: bool = False) -> list[Event]:
    return user_world(seed, index, long_streaks=long_streaks).events


def user_world(seed: int, index: int, *, long_streaks: bool = False) -> UserWorld:
    """The world of user `index` after its whole story (its events in `.events`)."""
    rng = random.Random(f"{seed}:{index}")  # noqa: S311 (seeded on purpose)
    world = UserWorld(rng, f"usr-{seed}-{index:06d}", BASE_MS + rng.randint(0, 3_600_000))
    home = world.new_place()
    world.add_charger(home)
    if rng.random() < 0.3:
        world.add_charger(home)  # two chargers at one home
    if rng.random() < 0.15:
        world.add_charger(None)  # a charger the user never gives a Location
    world.add_vehicle(has_gps=rng.random() < 0.6)
    if rng.random() < 0.35:
        world.add_vehicle(has_gps=rng.random() < 0.5)  # two vehicles sharing the home charger(s)
    episodes, weights = zip(*_EPISODES, strict=True)
    for _ in range(rng.randint(2, 6)):
        rng.choices(episodes, weights)[0](world, home)
    if long_streaks:
        for vehicle in list(world.vehicles.values()):
            long_failure_streak(world, vehicle)
    return world


# --- helpers ---------------------------------------------------------------------------------------
def _idle_vehicle(w: UserWorld) -> Vehicle:
    """A vehicle that is not plugged in (unplugging one if all are)."""
    idle = [v for v in w.vehicles.values() if not v.plugged]
    if idle:
        return w.rng.choice(idle)
    v = w.rng.choice(list(w.vehicles.values()))
    _leave(w, v)
    return v


def _home_charger(w: UserWorld, home: Place) -> Charger:
    """A free charger at home (unplugging whoever uses one, adding one if none is at home)."""
    at_home = [c for c in w.chargers.values() if c.location_id == home.id]
    if not at_home:
        return w.add_charger(home)
    free = [c for c in at_home if w.plugged_vehicle(c) is None]
    if free:
        return w.rng.choice(free)
    c = w.rng.choice(at_home)
    occupant = w.plugged_vehicle(c)
    if occupant is not None:
        _leave(w, occupant)
    return c


def _arrive_and_plug(w: UserWorld, v: Vehicle, c: Charger | None, place: Place) -> None:
    if v.has_gps:
        w.drive_to(v, place)
    w.plug(v, c)


def _leave(w: UserWorld, v: Vehicle) -> None:
    if v.plugged:
        w.unplug(v)
    if v.has_gps:
        w.drive_to(v, w.new_place(with_location=False))


def _plugged_at_home(w: UserWorld, home: Place) -> Vehicle:
    v = _idle_vehicle(w)
    _arrive_and_plug(w, v, _home_charger(w, home), home)
    return v


# --- episodes --------------------------------------------------------------------------------------
def home_session(w: UserWorld, home: Place) -> None:
    v = _plugged_at_home(w, home)
    if w.rng.random() < 0.5:
        play_action(w, v, "START", Outcome.CONFIRMED)
    if w.rng.random() < 0.7:  # otherwise the vehicle stays plugged in at home
        _leave(w, v)


def public_session(w: UserWorld, home: Place) -> None:
    """Plugged in away from home: `isPluggedIn` true but `pluggedInChargerId` null."""
    v = _idle_vehicle(w)
    place = w.new_place(with_location=w.rng.random() < 0.3)  # sometimes another of the user's Locations
    _arrive_and_plug(w, v, None, place)
    _leave(w, v)


def unlocated_charger_session(w: UserWorld, home: Place) -> None:
    """A linked charger without a Location: paired, but never 'at home' (even with GPS at home)."""
    charger = next((c for c in w.chargers.values() if c.location_id is None and w.plugged_vehicle(c) is None),
                   None) or w.add_charger(None)
    v = _idle_vehicle(w)
    _arrive_and_plug(w, v, charger, home)
    _leave(w, v)


def switch_session(w: UserWorld, home: Place) -> None:
    """Straight from one home charger to another at the same home."""
    v = _plugged_at_home(w, home)
    others = [c for c in w.chargers.values()
              if c.location_id == home.id and c.id != v.charger_id and w.plugged_vehicle(c) is None]
    target = others[0] if others else w.add_charger(home)
    w.switch(v, target)
    _leave(w, v)


def taken_over(w: UserWorld, home: Place) -> None:
    """A second car takes the first one's place on the home charger; the charger reports it first."""
    first = _plugged_at_home(w, home)
    others = [v for v in w.vehicles.values() if v is not first]
    second = w.rng.choice(others) if others else w.add_vehicle(has_gps=w.rng.random() < 0.5)
    if second.plugged:
        _leave(w, second)
    if second.has_gps:
        w.drive_to(second, home)  # at home already: the charger's report alone makes it "at home"
    w.take_over(w.chargers[first.charger_id or ""], second)
    if first.has_gps:
        w.drive_to(first, w.new_place(with_location=False))
    if w.rng.random() < 0.6:
        _leave(w, second)


def charger_moved(w: UserWorld, home: Place) -> None:
    """The home charger is assigned to another Location while in use, then (usually) moved back."""
    v = _plugged_at_home(w, home)
    c = w.chargers[v.charger_id or ""]
    w.move_charger(c, w.new_place())
    _leave(w, v)
    if w.rng.random() < 0.7:
        w.move_charger(c, home)


def gps_drift(w: UserWorld, home: Place) -> None:
    """A GPS vehicle's `location.id` flickers away while it stays plugged into the home charger."""
    v = _plugged_at_home(w, home)
    if v.has_gps:
        w.drive_to(v, w.new_place(with_location=False))
        w.drive_to(v, home)
    _leave(w, v)


def vehicle_replaced(w: UserWorld, home: Place) -> None:
    """The vehicle is deleted while plugged in at home, then re-linked: new id, new discovery."""
    v = _plugged_at_home(w, home)
    w.delete_vehicle(v)
    w.add_vehicle(has_gps=v.has_gps)


def charger_replaced(w: UserWorld, home: Place) -> None:
    v = _plugged_at_home(w, home)
    w.delete_charger(w.chargers[v.charger_id or ""])
    w.add_charger(home)
    _leave(w, v)


def actions(w: UserWorld, home: Place) -> None:
    v = _plugged_at_home(w, home)
    for _ in range(w.rng.randint(1, 4)):
        _random_action(w, v, w.rng.choice(list(Outcome)))
    _leave(w, v)


def failure_streak(w: UserWorld, home: Place) -> None:
    """10-13 counted failures in a row (with uncounted cancellations between), then usually a success."""
    v = _plugged_at_home(w, home)
    counted = [Outcome.FAILED, Outcome.PRECONDITION, Outcome.NOT_FOUND]
    neutral = [Outcome.CONFLICT, Outcome.REQUESTED_CANCELLATION, Outcome.UNNECESSARY]
    for _ in range(w.rng.randint(10, 13)):
        _random_action(w, v, w.rng.choice(counted))
        if w.rng.random() < 0.2:
            _random_action(w, v, w.rng.choice(neutral))
    if w.rng.random() < 0.7:
        _random_action(w, v, Outcome.CONFIRMED)
    _leave(w, v)


def long_failure_streak(w: UserWorld, v: Vehicle) -> None:
    """12-16 counted failures of START/STOP on the vehicle in a row, then a success half of the time."""
    counted = [Outcome.FAILED, Outcome.FAILED, Outcome.PRECONDITION, Outcome.NOT_FOUND]
    for _ in range(w.rng.randint(*LONG_STREAK)):
        play_action(w, v, w.rng.choice(["START", "STOP"]), w.rng.choice(counted))
    if w.rng.random() < 0.5:
        play_action(w, v, "START", Outcome.CONFIRMED)


def _random_action(w: UserWorld, v: Vehicle, outcome: Outcome) -> None:
    charger = w.chargers.get(v.charger_id or "")
    target: Vehicle | Charger = charger if charger is not None and w.rng.random() < 0.4 else v
    play_action(w, target, w.rng.choice(["START", "STOP"]), outcome)


_EPISODES: list[tuple[Callable[[UserWorld, Place], None], float]] = [
    (home_session, 5), (public_session, 2), (unlocated_charger_session, 1), (switch_session, 1),
    (charger_moved, 1), (gps_drift, 1), (vehicle_replaced, 1), (charger_replaced, 1), (actions, 2),
    (failure_streak, 0.6), (taken_over, 1),
]

