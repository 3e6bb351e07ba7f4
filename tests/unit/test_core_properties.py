"""Properties of the pure core over generated observation logs (DESIGN.md §2 invariants 3-6).

Logs come from `tests/support/observation_logs.py`; the expected events of an in-order log come from an
independent reference model, `tests/support/reference_model.py`. Receipt times are part of every generated
observation; properties that hold for any action memory draw a short one, so that actions are forgotten.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support.event_schema import check_event
from tests.support.observation_logs import observation_logs
from tests.support.reference_model import Expected, ReferenceModel, observed
from worker.core import (
    DEFAULT_CONFIG,
    ActionState,
    ActionUpdated,
    CoreConfig,
    EmittedEvent,
    EventType,
    Observation,
    Outcome,
    UserState,
    apply,
    decode_state,
    encode_state,
)

States = dict[str, UserState]

PROPERTY = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LOGS = observation_logs()
IN_ORDER = observation_logs(max_steps=50)
# Action memories from a minute (most actions of a log forgotten) to the default 72 hours (none).
CONFIGS = st.sampled_from([60, 300, 1800, 72 * 3600]).map(lambda s: CoreConfig(action_memory_seconds=s))


def run(log: Iterable[Observation], states: States | None = None,
        config: CoreConfig = DEFAULT_CONFIG) -> tuple[States, list[EmittedEvent]]:
    """Apply a log in the given order, one `UserState` per user, as the store does."""
    states = dict(states or {})
    emitted: list[EmittedEvent] = []
    for obs in log:
        applied = apply(states.get(obs.user_id, UserState()), obs, config)
        states[obs.user_id] = applied.state
        for emitted_event in applied.events:
            check_event(emitted_event.to_json())  # the published catalog holds for whatever the core emits
        emitted.extend(applied.events)
    return states, emitted


def facts(states: States) -> dict[str, dict[str, object]]:
    return {user_id: state.facts() for user_id, state in sorted(states.items())}


def _by_vehicle(emitted: Iterable[EmittedEvent]) -> dict[str, list[EmittedEvent]]:
    out: dict[str, list[EmittedEvent]] = defaultdict(list)
    for e in emitted:
        if e.vehicle_id is not None:
            out[e.vehicle_id].append(e)
    return out


def memories(states: States) -> dict[str, dict[int, int]]:
    return {user_id: state.actions for user_id, state in sorted(states.items())}


def failed_ids(emitted: Iterable[EmittedEvent]) -> set[str]:
    return {e.id for e in emitted if e.type is EventType.CONTROL_FAILED}


def failing_actions(log: Iterable[Observation]) -> set[tuple[str, str]]:
    """(user, action id) of every action that ended as a failure (DESIGN.md §1), straight from the log."""
    return {(o.user_id, o.action_id) for o in log if isinstance(o, ActionUpdated) and (
        o.state is ActionState.FAILED or (o.state is ActionState.CANCELLED
                                          and o.failure_type in ("FAILED_PRECONDITION", "NOT_FOUND")))}


@PROPERTY
@given(st.data(), LOGS, CONFIGS)
def test_any_permutation_gives_the_same_final_facts(data: st.DataObject, log: list[Observation],
                                                    config: CoreConfig) -> None:
    """Invariant 4: the stored state is the newest observation per field, whatever the arrival order; the
    action memory too (it depends on the receipt times seen, not on their order), with any memory length."""
    shuffled = data.draw(st.permutations(log), label="shuffled")
    got, expected = run(shuffled, config=config)[0], run(log, config=config)[0]
    assert facts(got) == facts(expected)
    assert memories(got) == memories(expected)


@PROPERTY
@given(st.data(), LOGS, CONFIGS)
def test_any_permutation_emits_one_control_failed_id_per_failed_action(
        data: st.DataObject, log: list[Observation], config: CoreConfig) -> None:
    """Late, reordered and repeated action updates: every failed action yields its `control.failed` id in
    any arrival order, the same set as in order; inside the memory window each exactly once."""
    shuffled = data.draw(st.permutations(log), label="shuffled")
    _, emitted = run(shuffled, config=config)
    _, in_order = run(log, config=config)
    assert failed_ids(emitted) == failed_ids(in_order)
    assert len(failed_ids(emitted)) == len(failing_actions(log))
    if config == DEFAULT_CONFIG:  # nothing forgotten: no failure emitted twice
        assert len([e for e in emitted if e.type is EventType.CONTROL_FAILED]) == len(failing_actions(log))
        assert len([e for e in in_order if e.type is EventType.CONTROL_FAILED]) == len(failing_actions(log))


@PROPERTY
@given(IN_ORDER, CONFIGS)
def test_action_memory_forgets_and_remembers_as_the_reference_model(log: list[Observation],
                                                                  config: CoreConfig) -> None:
    """A terminal update is a duplicate exactly when the reference model still remembers its action."""
    model = ReferenceModel(memory_seconds=config.action_memory_seconds)
    states: States = {}
    for obs in log:
        applied = apply(states.get(obs.user_id, UserState()), obs, config)
        if isinstance(obs, ActionUpdated) and applied.outcome is not Outcome.IGNORED:
            assert (applied.outcome is Outcome.DUPLICATE) == model.is_repeat(obs), obs
        model.feed(obs)
        states[obs.user_id] = applied.state


@PROPERTY
@given(st.data(), LOGS)
def test_reapplying_any_part_of_a_log_emits_nothing(data: st.DataObject, log: list[Observation]) -> None:
    """Invariants 3 and 4: a redelivered or older observation emits nothing and changes no fact."""
    states, _ = run(log)
    start, stop = sorted(data.draw(st.lists(st.integers(0, len(log)), min_size=2, max_size=2), label="slice"))
    part = data.draw(st.sampled_from([log, log[:stop], log[start:], log[start:stop]]), label="part")
    part = data.draw(st.permutations(part), label="order")
    again, emitted = run(part, states)
    assert emitted == []
    assert facts(again) == facts(states)


@PROPERTY
@given(st.data(), LOGS)
def test_at_home_events_alternate_per_vehicle_in_any_order(data: st.DataObject, log: list[Observation]) -> None:
    """Invariant 5, whatever the arrival order; `sequence` counts every event of a vehicle from 1; ids are unique."""
    _, emitted = run(data.draw(st.permutations(log), label="shuffled"))
    assert len({e.id for e in emitted}) == len(emitted), "an event id was emitted twice"
    for vid, events in _by_vehicle(emitted).items():
        numbered = [e.sequence for e in events if e.sequence is not None]
        assert numbered == list(range(1, len(numbered) + 1)), vid
        home = [e for e in events if e.type in (EventType.PLUGGED_IN_AT_HOME, EventType.UNPLUGGED_FROM_HOME)]
        for i, e in enumerate(home):
            expected = EventType.PLUGGED_IN_AT_HOME if i % 2 == 0 else EventType.UNPLUGGED_FROM_HOME
            assert e.type is expected, (vid, [x.type.value for x in home])
            if i % 2:  # an unplug names the charger and location of the plug-in it ends
                previous = home[i - 1]
                assert (e.charger_id, e.location_id) == (previous.charger_id, previous.location_id)


@PROPERTY
@given(st.data(), LOGS)
def test_no_charger_ever_has_two_vehicles_at_home(data: st.DataObject, log: list[Observation]) -> None:
    """In any arrival order, after every emitted event, a charger has at most one vehicle at home on it."""
    order = data.draw(st.sampled_from(["in order", "shuffled"]), label="order")
    states: States = {}
    home: dict[str, tuple[str, str | None]] = {}  # vehicle -> (user, charger)
    for obs in log if order == "in order" else data.draw(st.permutations(log), label="shuffled"):
        applied = apply(states.get(obs.user_id, UserState()), obs)
        states[obs.user_id] = applied.state
        for e in applied.events:
            if e.type is EventType.PLUGGED_IN_AT_HOME and e.vehicle_id is not None:
                home[e.vehicle_id] = (e.user_id, e.charger_id)
                takers = [vid for vid, at in home.items() if at == (e.user_id, e.charger_id)]
                assert takers == [e.vehicle_id], (e.charger_id, takers)
            elif e.type is EventType.UNPLUGGED_FROM_HOME and e.vehicle_id is not None:
                assert home.pop(e.vehicle_id) == (e.user_id, e.charger_id)
        _label(obs, applied.events)
        held = [(obs.user_id, v.home.charger_id) for v in applied.state.vehicles.values() if v.home is not None]
        assert len(held) == len(set(held)), held


def _label(obs: Observation, events: tuple[EmittedEvent, ...]) -> None:
    """Hypothesis statistics: how often a charger's own report moved a vehicle, and a charger changed hands."""
    left = {e.charger_id for e in events if e.type is EventType.UNPLUGGED_FROM_HOME}
    arrived = {e.charger_id for e in events if e.type is EventType.PLUGGED_IN_AT_HOME}
    if obs.kind == "charger" and any(e.data.get("reason") == "unplugged" for e in events):
        event("a charger's report ended an at-home")
    if obs.kind == "charger" and arrived:
        event("a charger's report began an at-home")
    if left & arrived:
        event("a charger passed from one vehicle to another in one observation")


def _sorted(events: Iterable[Expected]) -> list[Expected]:
    """One observation's events; across vehicles their order is not specified, within one `sequence` is."""
    return sorted(events, key=lambda e: (e.vehicle_id or "", e.sequence or 0, e.type, e.charger_id or ""))


@settings(PROPERTY, max_examples=150)
@given(IN_ORDER)
def test_in_order_log_emits_what_the_reference_model_expects(log: list[Observation]) -> None:
    """Invariant 6: fed in order (redeliveries included), the core emits exactly the model's events."""
    model = ReferenceModel()
    states: States = {}
    for index, obs in enumerate(log):
        applied = apply(states.get(obs.user_id, UserState()), obs)
        states[obs.user_id] = applied.state
        expected = _sorted(model.feed(obs))
        assert _sorted(map(observed, applied.events)) == expected, f"observation {index}: {obs!r}"
        for e in expected:
            event(e.type + (f":{dict(e.data)['reason']}" if e.type == "vehicle.unplugged_from_home" else ""))


@PROPERTY
@given(st.data(), IN_ORDER)
def test_event_ids_are_unique_and_deterministic(data: st.DataObject, log: list[Observation]) -> None:
    """Invariant 3: the same cause always yields the same id, and no two events of a run share one."""
    _, first = run(log)
    _, second = run(log)
    assert [e.id for e in first] == [e.id for e in second]
    assert first == second
    ids = [e.id for e in first]
    assert len(set(ids)) == len(ids)


@PROPERTY
@given(observation_logs(max_steps=30))
def test_every_state_survives_encoding(log: list[Observation]) -> None:
    """`decode_state(encode_state(s)) == s` for every state a log passes through."""
    state_by_user: States = {}
    assert decode_state(None) == UserState()
    for obs in log:
        state = apply(state_by_user.get(obs.user_id, UserState()), obs).state
        state_by_user[obs.user_id] = state
        assert decode_state(encode_state(state)) == state
