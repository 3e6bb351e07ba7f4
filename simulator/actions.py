"""START/STOP charging actions and how they end, as `user:vendor-action:updated` events."""

from __future__ import annotations

import enum
import functools

from simulator import payloads
from simulator.devices import Charger, Vehicle
from simulator.world import UserWorld


class Outcome(enum.Enum):
    """How a simulated action ends: the final `state` and `failureReason.type`."""

    CONFIRMED = ("CONFIRMED", None)
    FAILED = ("FAILED", "NO_RESPONSE")
    PRECONDITION = ("CANCELLED", "FAILED_PRECONDITION")
    NOT_FOUND = ("CANCELLED", "NOT_FOUND")
    CONFLICT = ("CANCELLED", "CONFLICT")
    REQUESTED_CANCELLATION = ("CANCELLED", "REQUESTED_CANCELLATION")
    UNNECESSARY = ("CANCELLED", "UNNECESSARY")

    @property
    def counts_as_failure(self) -> bool:
        """DESIGN §1: FAILED, or CANCELLED with FAILED_PRECONDITION or NOT_FOUND."""
        return self in (Outcome.FAILED, Outcome.PRECONDITION, Outcome.NOT_FOUND)


_DETAILS = {
    "NO_RESPONSE": "The device did not respond in time.",
    "FAILED_PRECONDITION": "The vehicle was not reachable.",
    "NOT_FOUND": "The device was not found.",
    "CONFLICT": "A newer action superseded this one.",
    "REQUESTED_CANCELLATION": "Cancelled by a schedule.",
    "UNNECESSARY": "The device was already in the requested state.",
}


def play_action(world: UserWorld, target: Vehicle | Charger, kind: str, outcome: Outcome) -> None:
    """A START/STOP on `target`: PENDING, then its outcome (an action refused at once skips PENDING)."""
    target_type = "vehicle" if isinstance(target, Vehicle) else "charger"
    action_id = world.new_id()
    created = world.clock.tick()
    render = functools.partial(
        payloads.charge_action_event, action_id=action_id, user_id=world.user_id, target_type=target_type,
        target_id=target.id, kind=kind, created_ms=created)
    immediate = outcome is Outcome.UNNECESSARY or world.rng.random() < 0.2
    if not immediate:
        world.events.append(render(state="PENDING", updated_ms=created, failure=None, event_ms=created + 40))
    done = world.clock.tick()
    state, reason = outcome.value
    failure = (reason, _DETAILS[reason]) if reason else None
    world.events.append(render(state=state, updated_ms=done, failure=failure, event_ms=done + 60))
    vehicle = target if isinstance(target, Vehicle) else world.plugged_vehicle(target)
    if outcome is Outcome.CONFIRMED and vehicle is not None and vehicle.plugged:
        world.set_charging(vehicle, kind == "START")
