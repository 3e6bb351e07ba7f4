"""Matching an existing Location: same name, within 25 m."""

from __future__ import annotations

import pytest

from plugwatch.enode_api.locations import HomeLocation, distance_meters, matches

HOME = HomeLocation("Home", 59.9139, 10.7522, "Europe/Oslo")


def test_distance_of_one_thousandth_degree_latitude_is_about_111_m() -> None:
    assert distance_meters(59.0, 10.0, 59.001, 10.0) == pytest.approx(111.2, abs=0.5)


def test_distance_is_zero_for_the_same_point() -> None:
    assert distance_meters(HOME.latitude, HOME.longitude, HOME.latitude, HOME.longitude) == 0.0


@pytest.mark.parametrize(("location", "expected"), [
    ({"name": "Home", "latitude": 59.9139, "longitude": 10.7522}, True),
    ({"name": "Home", "latitude": 59.91405, "longitude": 10.7522}, True),  # ~17 m
    ({"name": "Home", "latitude": 59.9142, "longitude": 10.7522}, False),  # ~33 m
    ({"name": "home", "latitude": 59.9139, "longitude": 10.7522}, False),  # names are exact
    ({"name": "Home", "latitude": None, "longitude": 10.7522}, False),
    ({"name": "Home"}, False),
])
def test_matches(location: dict[str, object], expected: bool) -> None:
    assert matches(location, HOME) is expected
