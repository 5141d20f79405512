"""Driving the studio's Chinese form builder (web/assets/src/form-builder.js) with real clicks and typing.

A field spec is ``{"type", "label", "key"?, "required"?, "min"?, "values"?}``: type is the builder's button
(``textfield`` 单行文字, ``textarea`` 多行文字, ``number`` 数字, ``datetime`` 日期, ``select`` 下拉选择,
``radio`` 单选, ``checklist`` 多选, ``checkbox`` 勾选项); key left out keeps the generated ``field_N``.
"""

from __future__ import annotations

from playwright.sync_api import Locator, expect

TYPE_WORDS = {"textfield": "单行文字", "textarea": "多行文字", "number": "数字", "datetime": "日期",
              "select": "下拉选择", "radio": "单选", "checklist": "多选", "checkbox": "勾选项"}


def add_field(scope: Locator, spec: dict) -> Locator:
    """Add one field to the form builder inside scope; returns its card."""
    cards = scope.locator("[data-testid='form-fields'] > li.fb-card")
    before = cards.count()
    scope.get_by_role("button", name=f"+ {TYPE_WORDS[spec['type']]}", exact=True).click()
    expect(cards).to_have_count(before + 1)
    card = cards.nth(before)
    card.locator("[data-prop='label']").fill(spec["label"])
    if spec.get("key"):
        card.locator("[data-prop='key']").fill(spec["key"])
    if spec.get("required"):
        card.locator("[data-prop='required']").check()
    if spec.get("min") is not None:
        card.locator("[data-prop='min']").fill(str(spec["min"]))
    if spec.get("values"):
        card.locator("[data-prop='options']").fill("\n".join(spec["values"]))
    return card


def build_form(scope: Locator, fields: list[dict]) -> None:
    for spec in fields:
        add_field(scope, spec)
    expect(scope.locator("[data-testid='form-problems'] li")).to_have_count(0)
