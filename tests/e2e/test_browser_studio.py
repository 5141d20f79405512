"""Procedure studio in a real browser: an admin models 教育资助 (seed 002: 学校摸底 → 学生申请 → 学校评议 →
学校公示 → 县教育部门审核) from an EMPTY diagram, in the browser only, deploys it, and other users complete a
case of it.

How the page is driven (headless Chromium through Playwright, CSRF on, no sleeps):
- the procedure is created from the studio's list page (new, empty diagram);
- forms are made in the studio's Chinese form builder on the 表单 tab with clicks and typing (标题, 字段代码,
  必填, 最小值, 选项: tests/e2e/studio_support.py);
- shapes are drawn through bpmn-js's API in the page (``modeling.createShape``, ``splitLane``, ``connect``:
  what the palette and context pad call);
- every XiangFlow property (lane → role, user task → form, actions, 办理时限 as a number of days, case
  status) is set in the properties panel's 乡流设置 group with real clicks and typing;
- validation, dry run (sample fields generated from the forms) and deploy use the toolbar buttons; the problems
  the server finds are shown on the diagram before they are fixed.
Screenshots: /tmp/xiangflow_studio.png (modeled diagram), /tmp/xiangflow_studio_case.png (finished case).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from engine.bootstrap import DEMO_PASSWORD
from tests.e2e.studio_support import build_form

pytestmark = pytest.mark.e2e
STUDIO_BUNDLE = Path(__file__).resolve().parents[2] / "web" / "static" / "dist" / "studio.js"


@pytest.fixture(autouse=True)
def _studio_bundle():
    if not STUDIO_BUNDLE.is_file():
        pytest.fail(f"{STUDIO_BUNDLE} is missing: run `make assets` (npm run build builds viewer and studio)")

NAMES = {
    "demo_admin": "蓬溪县管理员(演示)",
    "demo_sysadmin": "系统管理员(演示)",
    "demo_village": "宝梵镇村干部(演示)",
    "demo_township": "宝梵镇乡村振兴办(演示)",
    "demo_dept": "蓬溪县乡村振兴局(演示)",
}
HOUSEHOLD = "张德明"
LANES = (("学校", "township_officer"), ("村级代办", "village_cadre"), ("县教育部门", "county_department"))
# (id, name, lane index, form, actions, 办理时限 in days)
STEPS = (
    ("school_survey", "学校摸底", 0, "school_survey", ("approve",), 10),
    ("student_application", "学生申请", 1, "student_application", ("approve", "return"), 7),
    ("school_review", "学校评议", 0, "school_review", ("approve", "reject", "return"), 5),
    ("school_notice", "学校公示", 0, "school_notice", ("approve", "return"), 7),
    ("county_review", "县教育部门审核", 2, "county_review", ("approve", "reject", "return"), 10),
)


# fields added in the form builder (the builder's own field spec: tests/e2e/studio_support.py)
FORM_FIELDS = {
    "school_survey": [
        {"type": "textfield", "key": "student_name", "label": "学生姓名", "required": True},
        {"type": "textfield", "key": "school_name", "label": "就读学校", "required": True},
        {"type": "select", "key": "grade", "label": "学段", "values": ["小学", "初中", "高中", "中职"],
         "required": True},
        {"type": "datetime", "key": "survey_date", "label": "摸底日期",
         "required": True},
    ],
    "student_application": [
        {"type": "select", "key": "aid_type", "label": "申请资助项目",
         "values": ["国家助学金", "免学费", "营养改善计划", "生活补助"], "required": True},
        {"type": "textarea", "key": "application_reason", "label": "申请理由", "required": True},
        {"type": "checkbox", "key": "guardian_consent", "label": "监护人已签字确认", "required": True},
    ],
    "school_review": [
        {"type": "datetime", "key": "review_date", "label": "评议日期",
         "required": True},
        {"type": "number", "key": "review_members", "label": "评议小组人数", "required": True, "min": 3},
        {"type": "radio", "key": "review_result", "label": "评议结果", "values": ["同意", "不同意"],
         "required": True},
    ],
    "school_notice": [
        {"type": "datetime", "key": "notice_start", "label": "公示开始日期",
         "required": True},
        {"type": "number", "key": "notice_days", "label": "公示天数", "required": True, "min": 5},
        {"type": "radio", "key": "notice_objection", "label": "公示结果", "values": ["无异议", "有异议已核实"],
         "required": True},
    ],
    "county_review": [
        {"type": "number", "key": "aid_amount", "label": "资助金额(元)", "required": True, "min": 0},
        {"type": "textfield", "key": "approval_number", "label": "审核文号", "required": True},
    ],
}
SAMPLE = {"student_name": "张小明", "school_name": "宝梵镇中心小学", "grade": "小学", "survey_date": "2026-09-01",
          "aid_type": "生活补助", "application_reason": "家庭经济困难", "guardian_consent": True,
          "review_date": "2026-09-05", "review_members": 5, "review_result": "同意", "notice_start": "2026-09-06",
          "notice_days": 5, "notice_objection": "无异议", "aid_amount": 1000, "approval_number": "蓬教资〔2026〕8号"}

DRAW = """([laneNames]) => {
  const m = window.xiangflowStudio.modeler;
  const ef = m.get('elementFactory'), modeling = m.get('modeling'), canvas = m.get('canvas');
  const participant = modeling.createShape(ef.createParticipantShape({type: 'bpmn:Participant'}),
                                           {x: 760, y: 420}, canvas.getRootElement());
  modeling.updateLabel(participant, '教育资助');
  modeling.resizeShape(participant, {x: participant.x, y: participant.y, width: 1260, height: 480});
  modeling.splitLane(participant, 3);
  const lanes = participant.children.filter(e => e.type === 'bpmn:Lane').sort((a, b) => a.y - b.y);
  lanes.forEach((lane, i) => modeling.updateLabel(lane, laneNames[i]));
  return {lanes: lanes.map(l => l.id), left: participant.x, lanesY: lanes.map(l => l.y + l.height / 2)};
}"""

ADD_SHAPES = """([layout, steps]) => {
  const m = window.xiangflowStudio.modeler;
  const ef = m.get('elementFactory'), modeling = m.get('modeling'), registry = m.get('elementRegistry');
  const participant = registry.filter(e => e.type === 'bpmn:Participant')[0];
  const place = (type, id, name, lane, column) => {
    const shape = modeling.createShape(ef.createShape({type}),
      {x: layout.left + 120 + 170 * column, y: layout.lanesY[lane]}, participant);
    modeling.updateProperties(shape, {id});
    if (name) modeling.updateLabel(shape, name);
    return shape;
  };
  const chain = [place('bpmn:StartEvent', 'start', '发起', 0, 0)];
  steps.forEach(([id, name, lane], i) => chain.push(place('bpmn:UserTask', id, name, lane, i + 1)));
  chain.push(place('bpmn:EndEvent', 'end', '资助审核完成', steps[steps.length - 1][2], steps.length + 1));
  chain.slice(1).forEach((shape, i) => modeling.connect(chain[i], shape));
  return registry.getAll().filter(e => e.type !== 'label').map(e => e.id);
}"""

def log_in(page: Page, username: str) -> None:
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("current-user")).to_have_text(NAMES[username])


def log_out(page: Page) -> None:
    page.get_by_role("button", name="退出登录").click()
    expect(page).to_have_url(re.compile(r"/login$"))


def select_element(page: Page, element_id: str) -> None:
    page.evaluate("(id) => { const m = window.xiangflowStudio.modeler;"
                  " m.get('selection').select(m.get('elementRegistry').get(id)); }", element_id)
    expect(page.locator("#bpmn-properties .bio-properties-panel-header-label")).to_be_visible()


def panel(page: Page, entry: str):
    return page.locator(f"#bpmn-properties #bio-properties-panel-{entry}")


def spiff(page: Page, element_id: str, name: str):
    return page.evaluate("([id, name]) => { const s = window.xiangflowStudio;"
                         " return s.properties.get(s.modeler.get('elementRegistry').get(id), name) || null; }",
                         [element_id, name])


def make_forms(page: Page, code: str) -> None:
    page.get_by_test_id("tab-forms").click()
    for form in FORM_FIELDS:
        page.locator("#new-form-name").fill(form)
        page.get_by_test_id("add-form").click()
        expect(page.get_by_test_id("form-current")).to_have_text(f"正在编辑表单 {code}/{form}")
        build_form(page.locator("#form-editor"), FORM_FIELDS[form])
    expect(page.get_by_test_id("form-list").locator("button")).to_have_count(len(FORM_FIELDS))


def set_step_properties(page: Page, code: str, step) -> None:
    element_id, _name, _lane, form, actions, due = step
    select_element(page, element_id)
    panel(page, "xf-form-key").select_option(f"{code}/{form}")
    for action in ("approve", "reject", "return"):
        box = panel(page, f"xf-action-{action}")
        box.check() if action in actions else box.uncheck()
    panel(page, "xf-due-amount").fill(str(due))  # 天, the unit's default
    page.wait_for_function("([id, due]) => { const s = window.xiangflowStudio;"
                           " return s.properties.get(s.modeler.get('elementRegistry').get(id), 'dueIn') === due; }",
                           arg=[element_id, f"P{due}D"])
    assert spiff(page, element_id, "formKey") == f"{code}/{form}"
    assert (spiff(page, element_id, "actions") or "approve") == ",".join(actions)  # absent = approve only


def fill_task(page: Page, fields: dict, button: str, opinion: str) -> None:
    for label, value in fields.items():
        target = page.get_by_label(re.compile(rf"^\s*{re.escape(label)}( \*)?\s*$"))  # required fields end in *
        if isinstance(value, bool):
            target.check()
        elif target.evaluate("e => e.tagName") == "SELECT":
            target.select_option(value)
        elif target.evaluate("e => e.type") == "radio":
            target.check()
        else:
            target.fill(str(value))
    page.get_by_label("审批意见").fill(opinion)
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^已(提交|通过)「"))


def open_task(page: Page, case_id: int, step: str) -> None:
    title = f"{HOUSEHOLD} · 教育资助"
    row = page.get_by_test_id("task-row").filter(has_text=title)
    expect(row).to_have_count(1)
    row.get_by_role("link", name=title).click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(page.get_by_test_id("current-steps")).to_have_text(step)
    page.get_by_role("link", name=f"办理:{step}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(step)


def test_admin_models_education_aid_in_the_browser_and_users_complete_a_case(page: Page, live_server):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    code = f"education_aid_{uuid.uuid4().hex[:6]}"

    # ---- 管理员: a new procedure from an empty diagram
    log_in(page, "demo_admin")
    page.get_by_test_id("nav-studio").click()
    blank = page.get_by_test_id("studio-new-bpmn")  # the BPMN form, under 新建流程(简易模式)
    blank.get_by_label("流程代码").fill(code)
    blank.get_by_label("流程名称").fill("教育资助")
    blank.get_by_role("button", name="新建(空白流程图)").click()
    expect(page.locator("#studio")).to_have_attribute("data-ready", "true", timeout=20_000)
    expect(page.locator("#studio")).to_have_attribute("data-mode", "bpmn")  # an empty diagram is no simple model
    assert page.evaluate("window.xiangflowStudio.modeler.get('elementRegistry').getAll().map(e => e.type)") == [
        "bpmn:Process"]  # nothing drawn yet
    expect(page.locator(".djs-palette")).to_be_visible()
    expect(page.get_by_role("button", name="创建开始事件")).to_have_count(1)  # the palette in Chinese

    make_forms(page, code)

    # ---- the diagram: pool with three lanes, start, five user tasks, end
    page.get_by_test_id("tab-bpmn").click()
    layout = page.evaluate(DRAW, [[name for name, _role in LANES]])
    ids = page.evaluate(ADD_SHAPES, [layout, [[s[0], s[1], s[2]] for s in STEPS]])
    assert {"start", "end", *(s[0] for s in STEPS)} <= set(ids)
    expect(page.locator(".bjsl-button")).to_contain_text("个错误")  # bpmnlint: lanes without roles, tasks without forms

    # validation before the properties are set: the server's problems are shown on the elements
    page.get_by_test_id("studio-validate").click()
    expect(page.get_by_test_id("studio-message")).to_contain_text("校验发现")
    problems = page.get_by_test_id("problem")
    expect(problems.filter(has_text="学校摸底:").filter(has_text="表单")).to_have_count(1)  # by name, not id
    expect(problems.filter(has_text=re.compile(r"^学校:")).filter(has_text="角色")).to_have_count(1)
    expect(page.locator("[data-problem-for='school_survey']")).to_be_visible()
    problems.filter(has_text="学校摸底:").first.click()
    expect(page.locator("#bpmn-properties .bio-properties-panel-header-label")).to_have_text("学校摸底")

    # ---- XiangFlow properties in the properties panel
    for lane_id, (_name, role) in zip(layout["lanes"], LANES, strict=True):
        select_element(page, lane_id)
        panel(page, "xf-lane-role").select_option(role)
    assert page.evaluate("(ids) => ids.map(id => window.xiangflowStudio.modeler.get('elementRegistry')"
                         ".get(id).businessObject.name)", layout["lanes"]) == [
        "学校 (township_officer)", "村级代办 (village_cadre)", "县教育部门 (county_department)"]
    for step in STEPS:
        set_step_properties(page, code, step)
    select_element(page, "end")
    panel(page, "xf-case-status").select_option("approved")
    assert spiff(page, "end", "caseStatus") == "approved"

    page.get_by_test_id("tab-settings").click()
    page.get_by_label("说明(依据的文件)").fill("学校摸底 → 学生申请 → 学校评议 → 学校公示 → 县教育部门审核(种子文件 002 二(二)1)")
    page.get_by_test_id("tab-bpmn").click()
    page.get_by_test_id("studio-validate").click()
    expect(page.get_by_test_id("no-problems")).to_have_text("校验通过:可以发布")
    expect(page.locator("[data-problem-for]")).to_have_count(0)

    # ---- dry run in the sandbox: the path is marked on the diagram
    page.get_by_test_id("tab-dryrun").click()
    sample = page.get_by_test_id("dryrun-sample")  # fields generated from each step's form, in flow order
    expect(sample.locator("legend")).to_have_text([s[1] for s in STEPS])
    sample.locator("[data-step='school_survey'] [data-sample-key='school_name']").fill(SAMPLE["school_name"])
    page.get_by_test_id("dryrun-run").click()
    expect(page.get_by_test_id("dryrun-outcome")).to_have_text("流程走完,案件状态:已批准")
    expect(page.get_by_test_id("dryrun-steps").locator("li")).to_have_count(5)
    expect(page.get_by_test_id("dryrun-steps").locator("li").first).to_contain_text(
        f"学校摸底:乡镇乡村振兴办通过(学生姓名:试运行,就读学校:{SAMPLE['school_name']}")
    expect(page.get_by_test_id("dryrun-path")).to_contain_text("发起 → 学校摸底 → 学生申请")
    expect(page.get_by_test_id("dryrun-result")).not_to_contain_text("school_survey")  # names, not ids
    page.get_by_test_id("tab-bpmn").click()
    expect(page.locator(".djs-element.xf-dry-path[data-element-id='county_review']")).to_have_count(1)
    expect(page.locator(".bjsl-button")).to_have_text("没有问题")  # bpmnlint, in the editor
    page.evaluate("window.xiangflowStudio.modeler.get('canvas').zoom('fit-viewport', 'auto')")
    page.screenshot(path="/tmp/xiangflow_studio.png", full_page=True)

    # ---- deploy
    page.get_by_test_id("studio-deploy").click()
    expect(page.get_by_test_id("studio-message")).to_have_text(re.compile(r"^已发布为第 1 版:新发起的案件使用此版本"))
    saved = page.evaluate("window.xiangflowStudio.state.files")
    survey = json.loads(saved[f"form/{code}/school_survey"])
    assert [c["key"] for c in survey["components"]] == ["student_name", "school_name", "grade", "survey_date"]
    assert survey["components"][3]["label"] == "摸底日期"
    page.goto("/studio/")
    expect(page.locator(f"[data-procedure='{code}'][data-version='1']")).to_contain_text("在用")
    # the new procedure belongs to the county admin's county; a shipped one is only copied, not opened
    expect(page.locator(f"[data-procedure='{code}'] [data-testid='procedure-owner']")).to_have_text("蓬溪县")
    shipped = page.locator("[data-procedure='housing_renovation'][data-version='1']")
    expect(shipped.locator("[data-testid='procedure-owner']")).to_have_text("全省/系统")
    expect(shipped.get_by_role("button", name="打开为草稿")).to_have_count(0)
    expect(shipped.get_by_text("复制为新流程")).to_be_visible()
    log_out(page)

    # ---- 学校 (demo_township) starts a case and does 学校摸底
    log_in(page, "demo_township")
    page.get_by_role("link", name="发起流程").click()
    page.get_by_label("流程").select_option(code)
    page.get_by_label("农户").select_option(label=f"{HOUSEHOLD}(脱贫不稳定户)")
    page.get_by_role("button", name="发起").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("学校摸底")
    case_href = page.get_by_role("link", name=f"{HOUSEHOLD} · 教育资助").get_attribute("href")
    case_id = int(re.search(r"/cases/(\d+)$", case_href).group(1))
    fill_task(page, {"学生姓名": SAMPLE["student_name"], "就读学校": SAMPLE["school_name"], "学段": "小学",
                     "摸底日期": SAMPLE["survey_date"]}, "提交", "已入校摸底,家庭经济困难属实。")
    expect(page.get_by_test_id("current-steps")).to_have_text("学生申请")
    log_out(page)

    # ---- 村级代办 (demo_village) files the student's application
    log_in(page, "demo_village")
    open_task(page, case_id, "学生申请")
    fill_task(page, {"申请资助项目": "生活补助", "申请理由": SAMPLE["application_reason"], "监护人已签字确认": True},
              "通过", "代学生家庭提交申请。")
    log_out(page)

    # ---- 学校 评议 and 公示
    log_in(page, "demo_township")
    open_task(page, case_id, "学校评议")
    fill_task(page, {"评议日期": SAMPLE["review_date"], "评议小组人数": 5, "同意": True}, "通过", "评议小组同意。")
    page.get_by_role("link", name="办理:学校公示").click()
    fill_task(page, {"公示开始日期": SAMPLE["notice_start"], "公示天数": 5, "无异议": True}, "通过", "公示五天无异议。")
    log_out(page)

    # ---- 县教育部门 (demo_dept) 审核: the case ends 已批准
    log_in(page, "demo_dept")
    open_task(page, case_id, "县教育部门审核")
    fill_task(page, {"资助金额(元)": 1000, "审核文号": SAMPLE["approval_number"]}, "通过", "同意资助。")
    expect(page.get_by_test_id("case-status")).to_have_text("已批准")
    history = page.get_by_test_id("history").locator("li")
    expect(history).to_have_count(6)
    for item, (step, user) in zip(history.all()[1:], [("学校摸底", "demo_township"), ("学生申请", "demo_village"),
                                                     ("学校评议", "demo_township"), ("学校公示", "demo_township"),
                                                     ("县教育部门审核", "demo_dept")], strict=True):
        expect(item).to_contain_text(f"· {step}")
        expect(item).to_contain_text(NAMES[user])
    expect(page.locator("#diagram")).to_have_attribute("data-rendered", "true")
    expect(page.locator("#diagram [data-element-id='county_review']")).to_have_class(re.compile(r"\bxf-done\b"))
    page.screenshot(path="/tmp/xiangflow_studio_case.png", full_page=True)
    assert errors == []


def test_a_shipped_procedure_opens_for_the_system_admin_with_its_properties_forms_and_decision_tables(page: Page, live_server):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, "demo_sysadmin")  # a shipped procedure is changed by the system admin only
    page.goto("/studio/")
    row = page.locator("[data-procedure='housing_renovation'][data-version='1']")
    row.get_by_role("button", name="打开为草稿").click()
    expect(page.locator("#studio")).to_have_attribute("data-ready", "true", timeout=20_000)
    expect(page.get_by_role("heading", level=1)).to_contain_text("housing_renovation")

    select_element(page, "application")
    expect(panel(page, "xf-form-key")).to_have_value("housing_renovation/application")
    expect(panel(page, "xf-action-approve")).to_be_checked()
    expect(panel(page, "xf-attachments")).to_have_value("房屋照片,身份证明")  # 允许的附件
    expect(panel(page, "xf-opinion-required")).not_to_be_checked()  # 必须填写意见
    select_element(page, "county_approval")
    expect(panel(page, "xf-opinion-required")).to_be_checked()
    select_element(page, "township_audit")
    panel(page, "xf-opinion-required").check()
    page.wait_for_function("() => { const s = window.xiangflowStudio; return s.properties.get("
                           "s.modeler.get('elementRegistry').get('township_audit'), 'opinionRequired') === 'true'; }")
    panel(page, "xf-opinion-required").uncheck()
    page.wait_for_function("() => { const s = window.xiangflowStudio; return !s.properties.get("
                           "s.modeler.get('elementRegistry').get('township_audit'), 'opinionRequired'); }")
    panel(page, "xf-attachments").fill("signature")
    expect(page.locator("#bpmn-properties")).to_contain_text("附件类别不能是 file、signature、none")
    panel(page, "xf-attachments").fill("鉴定报告,房屋照片")
    page.wait_for_function("() => { const s = window.xiangflowStudio; return s.properties.get("
                           "s.modeler.get('elementRegistry').get('township_audit'), 'attachments') === '鉴定报告,房屋照片'; }")
    decision = page.evaluate("window.xiangflowStudio.modeler.get('elementRegistry')"
                             ".filter(e => e.type === 'bpmn:BusinessRuleTask').map(e => e.id)")
    select_element(page, decision[0])
    expect(panel(page, "xf-decision")).to_have_value("qualification")

    page.get_by_test_id("tab-forms").click()
    expect(page.get_by_test_id("form-list").get_by_role("button", name="housing_renovation/application")).to_be_visible()
    expect(page.locator("#form-editor .fb-card").first).to_be_visible()
    expect(page.locator("#form-editor")).not_to_contain_text("Text field")
    page.get_by_test_id("tab-dmn").click()
    expect(page.locator("#dmn-editor .tjs-table")).to_be_visible()  # dmn-js decision table editor
    expect(page.locator("#dmn-editor")).to_contain_text("危房改造对象资格判定")
    page.get_by_test_id("dmn-list").get_by_role("button", name="renovation_subsidy.dmn").click()
    expect(page.locator("#dmn-editor")).to_contain_text("改造方式及补助标准")

    page.get_by_test_id("studio-validate").click()  # saved through all three editors, then checked by the server
    expect(page.get_by_test_id("no-problems")).to_have_text("校验通过:可以发布")
    assert errors == []
