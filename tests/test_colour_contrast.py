"""Text colours of the dashboard against their backgrounds, read from the CSS files themselves,
so that a later change of a colour cannot quietly undo WCAG AA (4.5:1 for normal text).

Before, white on the technical cyan was 2.93:1, the grey "--" of a silent device on a yellow
warning tile 1.83:1, the "warning" priority on white 3.90:1 and .muted on the page 4.26:1."""

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "frontend" / "static" / "cardiospike"
WCAG_AA_NORMAL_TEXT = 4.5


def relative_luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of "#rgb" or "#rrggbb"."""
    digits = hex_colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    linear = []
    for start in (0, 2, 4):
        channel = int(digits[start : start + 2], 16) / 255
        linear.append(channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4)
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(colour_a: str, colour_b: str) -> float:
    lighter, darker = sorted([relative_luminance(colour_a), relative_luminance(colour_b)])[::-1]
    return (lighter + 0.05) / (darker + 0.05)


def test_the_contrast_formula_gives_the_known_ratios():
    assert contrast_ratio("#000", "#fff") == pytest.approx(21.0)
    assert contrast_ratio("#fff", "#fff") == pytest.approx(1.0)
    assert contrast_ratio("#fff", "#12a4c7") == pytest.approx(2.93, abs=0.01)  # the old cyan tile


def without_print_rules(text: str) -> str:
    """The CSS without its ``@media print`` blocks: paper has its own colours (dark grey on
    white), which are not what the screen shows, and would win here as later rules."""
    while (start := text.find("@media print")) != -1:
        depth, end = 0, text.index("{", start)
        while True:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
            end += 1
        text = text[:start] + text[end + 1 :]
    return text


class Stylesheet:
    """The rules of a few CSS files: each selector of a rule's list maps to its declarations
    (later rules win, as in the browser when specificity is equal); var(--x) resolves through
    the :root custom properties."""

    def __init__(self, *names: str):
        self.rules: dict[str, dict[str, str]] = {}
        for name in names:
            text = re.sub(r"/\*.*?\*/", "", (STATIC / name).read_text(encoding="utf-8"), flags=re.S)
            text = without_print_rules(text)
            # innermost blocks only: the rules inside @media come without the @media prelude
            for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
                declarations = dict(
                    (part.split(":", 1)[0].strip(), part.split(":", 1)[1].strip())
                    for part in body.split(";")
                    if ":" in part
                )
                for selector in selectors.split(","):
                    self.rules.setdefault(" ".join(selector.split()), {}).update(declarations)

    def value(self, selector: str, prop: str) -> str:
        value = self.rules[selector][prop]
        variable = re.fullmatch(r"var\((--[\w-]+)\)", value)
        return self.rules[":root"][variable.group(1)] if variable else value


@pytest.fixture(scope="module")
def css() -> Stylesheet:
    return Stylesheet("app.css", "dashboard.css")


@pytest.mark.parametrize("priority", ["critical", "warning", "technical"])
def test_tile_and_legend_text_is_readable_on_each_alarm_colour(css, priority):
    for selector in (f".tile.{priority}", f".swatch.{priority}"):
        ratio = contrast_ratio(css.value(selector, "color"), css.value(selector, "background"))
        assert ratio >= WCAG_AA_NORMAL_TEXT, f"{selector}: {ratio:.2f}:1"


@pytest.mark.parametrize("priority", ["critical", "warning", "technical"])
@pytest.mark.parametrize("part", ["hr", "rhythm"])
def test_the_greyed_values_of_a_silent_device_are_readable_on_an_alarm_tile(css, priority, part):
    # the cascade: a rule for this alarm colour, else the greyed colour of every silent tile
    specific = f".tile.{priority}.no-signal .{part}"
    colour = css.value(specific if specific in css.rules else f".tile.no-signal .{part}", "color")
    if colour == "inherit":
        colour = css.value(f".tile.{priority}", "color")
    ratio = contrast_ratio(colour, css.value(f".tile.{priority}", "background"))
    assert ratio >= WCAG_AA_NORMAL_TEXT, f"{priority} tile, no-signal .{part}: {ratio:.2f}:1"


def test_the_greyed_values_stay_readable_on_a_normal_tile(css):
    ratio = contrast_ratio(
        css.value(".tile.no-signal .hr", "color"), css.value(".tile", "background")
    )
    assert ratio >= WCAG_AA_NORMAL_TEXT


@pytest.mark.parametrize(
    "selector",
    [
        "tr.alarm-row.critical td.priority",
        "tr.alarm-row.warning td.priority",
        "tr.alarm-row.technical td.priority",
        "#alarm-banner.critical",
        "#alarm-banner.warning",
        "#alarm-banner.technical",
    ],
)
def test_alarm_priority_text_is_readable_on_the_page_and_on_a_card(css, selector):
    for background in ("#ffffff", css.value(":root", "--bg")):
        ratio = contrast_ratio(css.value(selector, "color"), background)
        assert ratio >= WCAG_AA_NORMAL_TEXT, f"{selector} on {background}: {ratio:.2f}:1"


def test_muted_text_is_readable_on_the_page_a_card_and_the_status_pill(css):
    muted = css.value(".muted", "color")
    for background in (
        "#ffffff",
        css.value(":root", "--bg"),
        css.value(".live-status", "background"),
    ):
        ratio = contrast_ratio(muted, background)
        assert ratio >= WCAG_AA_NORMAL_TEXT, f".muted on {background}: {ratio:.2f}:1"


def test_the_low_battery_badge_is_readable_and_the_plain_charge_is_the_tiles_ink(css):
    """The low-battery badge has colours of its own (on any tile colour and page); the plain
    charge sets no colour, so it is the tile's or the page's ink, which the tests above check;
    a device list's last reported charge is the muted grey."""
    ratio = contrast_ratio(
        css.value(".battery.low", "color"), css.value(".battery.low", "background")
    )
    assert ratio >= WCAG_AA_NORMAL_TEXT, f".battery.low: {ratio:.2f}:1"
    assert "color" not in css.rules[".battery"]
    assert "color" not in css.rules.get(".tile-head .battery", {})
    assert css.value(".battery.stale", "color") == css.value(".muted", "color")
