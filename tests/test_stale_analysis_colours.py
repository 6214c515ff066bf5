"""The "Analysis delayed" colours pass WCAG AA (4.5:1), read from the CSS as
tests/test_colour_contrast.py reads the others: the badge's text on its purple, and the greyed
heart rate and rhythm of a delayed tile on every alarm colour and of the live view on its card."""

import pytest

from tests.test_colour_contrast import WCAG_AA_NORMAL_TEXT, Stylesheet, contrast_ratio


@pytest.fixture(scope="module")
def css() -> Stylesheet:
    return Stylesheet("app.css", "dashboard.css")


def test_the_badge_text_is_readable_on_its_colour(css):
    ratio = contrast_ratio(
        css.value(".analysis-badge", "color"), css.value(".analysis-badge", "background")
    )
    assert ratio >= WCAG_AA_NORMAL_TEXT, f"{ratio:.2f}:1"


@pytest.mark.parametrize("priority", [None, "critical", "warning", "technical"])
@pytest.mark.parametrize("part", ["hr", "rhythm"])
def test_the_greyed_values_of_a_delayed_tile_are_readable_on_its_colour(css, priority, part):
    tile = f".tile.{priority}" if priority else ".tile"
    # the cascade: a rule for this alarm colour, else the greyed colour of every delayed tile
    specific = f"{tile}.analysis-delayed .{part}"
    colour = css.value(
        specific if specific in css.rules else f".tile.analysis-delayed .{part}", "color"
    )
    if colour == "inherit":
        colour = css.value(tile, "color")
    ratio = contrast_ratio(colour, css.value(tile, "background"))
    assert ratio >= WCAG_AA_NORMAL_TEXT, f"{tile}.analysis-delayed .{part}: {ratio:.2f}:1"


@pytest.mark.parametrize(
    "selector", ["#live.analysis-delayed .vital .big", "#live.analysis-delayed #rhythm-value"]
)
def test_the_greyed_values_of_the_live_view_are_readable_on_its_card_and_page(css, selector):
    for background in ("#ffffff", css.value(":root", "--bg")):
        ratio = contrast_ratio(css.value(selector, "color"), background)
        assert ratio >= WCAG_AA_NORMAL_TEXT, f"{selector} on {background}: {ratio:.2f}:1"
