"""流程判定结果 on the case page speaks in the decision tables' words: their output labels, 是/否, and no
engine keys (qualification_reason, notice_serial …) in front of users."""

from __future__ import annotations

from tests.integration.test_form_rules import APPLICATION


def test_the_case_page_names_decisions_by_their_labels(db, client_for):
    case_id = db.start_case("demo_village", procedure="housing_renovation", subject_id=db.household("张德明"))
    db.complete(case_id, "demo_village", data=APPLICATION)  # 对象资格判定 (DMN) runs after 农户申请
    page = client_for("demo_village").get(f"/cases/{case_id}").get_data(as_text=True)
    computed = page.split('data-testid="computed"', 1)[1].split("</dl>", 1)[0]
    assert "<dt>是否符合条件</dt><dd>是</dd>" in computed
    assert "判定理由" in computed
    for key in ("qualification_reason", "qualified", "notice_serial", "True"):
        assert key not in computed, key


def test_a_code_is_shown_by_its_name(db):
    with db.uow() as work:
        from engine.models import Case
        case_id = db.start_case("demo_village", procedure="housing_renovation", subject_id=db.household("张德明"))
        case = work.session.get(Case, case_id)
        words = dict(work.overview.decision_words(case, {
            "renovation_mode": "rebuild", "renovation_mode_name": "拆除重建", "subsidy_amount": 35000,
            "notice_serial": "PX-2026-001"}))
    assert words == {"改造方式": "拆除重建", "补助标准(元)": "35000"}
