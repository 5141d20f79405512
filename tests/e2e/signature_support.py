"""Drawing a handwritten signature on the task page's signature pad, as a finger or a mouse would."""

from __future__ import annotations

from playwright.sync_api import Page, expect


def draw_on_pad(page: Page, touch: bool = False) -> None:
    """Draw two strokes across the pad's canvas: with the mouse, or with a finger through CDP touch events."""
    canvas = page.get_by_test_id("signature-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    strokes = [[(0.1 + 0.04 * i, 0.5 + (0.3 if i % 2 else -0.3)) for i in range(12)],
               [(0.65, 0.2), (0.7, 0.8), (0.8, 0.3), (0.9, 0.7)]]
    points = [[(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in s] for s in strokes]
    if not touch:
        for stroke in points:
            page.mouse.move(*stroke[0])
            page.mouse.down()
            for x, y in stroke[1:]:
                page.mouse.move(x, y, steps=4)
            page.mouse.up()
        return
    cdp = page.context.new_cdp_session(page)
    for stroke in points:
        (x0, y0), rest = stroke[0], stroke[1:]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
        for x, y in rest:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def sign_on_pad(page: Page, touch: bool = False) -> None:
    """Draw on the pad; the drawing goes with the task form's next submit (one request with the decision)."""
    draw_on_pad(page, touch)
    expect(page.get_by_test_id("signature-status")).to_have_text("已签名,提交时一并保存")
