import numpy as np
import pytest

from ebsd_core.io.hex_grid import (
    ROW_HEIGHT,
    brick_image,
    brick_points,
    brick_shape,
    grid_columns,
    grid_size,
    is_hexagonal,
    places_from_positions,
    point_at,
    up2_places,
)

# rows of 3 and 2 points, the second half a step in: (row, column in half steps)
FIVE = np.array([[0, 0], [0, 2], [0, 4], [1, 1], [1, 3]])


def test_points_are_drawn_two_half_steps_wide_so_that_rows_interlock():
    assert brick_shape(FIVE) == (2, 6)
    assert brick_points(FIVE).tolist() == [[0, 0, 1, 1, 2, 2], [-1, 3, 3, 4, 4, -1]]
    image = brick_image(np.array([0.5, 1.5, 2.5, 3.5, 4.5]), FIVE)
    np.testing.assert_array_equal(image[1], [np.nan, 3.5, 3.5, 4.5, 4.5, np.nan])


@pytest.mark.parametrize(
    ("places", "hexagonal"),
    [
        (FIVE, True),
        ([[0, 0], [0, 1], [1, 0], [1, 1]], False),  # a square grid of half steps
        ([[0, 0], [1, 1], [2, 2]], False),  # a diagonal line: one point a row
        ([[0, 0], [0, 2], [0, 4]], False),  # one row
        ([[0, 0], [0, 2], [0, 2], [1, 1]], False),  # a place twice
    ],
)
def test_a_hexagonal_grid_is_told_from_other_places(places, hexagonal):
    assert is_hexagonal(places) is hexagonal


def test_stage_positions_give_the_places_of_a_hexagonal_grid():
    step = 1.5
    x = np.array([0, 1, 2, 0.5, 1.5]) * step + 10.0  # the stage's own origin
    y = np.array([0, 0, 0, 1, 1]) * step * np.sqrt(3) / 2 + 0.0004  # written with a few decimals
    assert places_from_positions(x, y).tolist() == FIVE.tolist()
    assert places_from_positions(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])) is None  # square
    assert places_from_positions(x, np.append(y[:-1], np.nan)) is None


def test_a_click_on_the_map_finds_its_point():
    cells = brick_points(FIVE)
    assert point_at(cells, 0.0, 0) == 0 and point_at(cells, 0.6, 0.1) == 0  # either half step of the first point
    assert point_at(cells, 1.0, 0) == 1  # the centre of the second: its first half step
    assert point_at(cells, 0.75, ROW_HEIGHT) == 3  # the first of the second row, half a step in
    assert point_at(cells, 0, ROW_HEIGHT) is None  # the half step before it
    assert point_at(cells, 5, 0) is None and point_at(cells, 0, 3 * ROW_HEIGHT) is None  # off the map


@pytest.mark.parametrize("shorter", [True, False])
def test_a_rows_points_are_counted_from_0_as_its_columns_whichever_way_it_is_offset(shorter):
    """Rows of 4 and 3 points, the shorter half a step in (OIM's .ang), or of 4 and 5, the longer half a step out
    (kikuchipy's .up2): the columns of a region are those the map's hover names."""
    places = up2_places(4, 3, 11 if shorter else 13)
    widths = [4, 3, 4] if shorter else [4, 5, 4]
    assert grid_columns(places).tolist() == [c for width in widths for c in range(width)]
    assert grid_size(places) == (3, max(widths))
