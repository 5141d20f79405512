"""简易模式 (issue 14, Must show) in a real browser: a county admin builds the 3-step 低保 procedure in the simple
designer from the 三级审批 template — adds 家庭人口 (number) and 申请理由 (textarea) to the application form, sets
5 工作日 on the township step, adds a condition 家庭人口 ≥ 5 → an extra county department step — dry-runs both
branches, publishes; other users run one case through each branch. No ISO duration, JSON or element id is typed,
and none is shown on the pages of that path (asserted on the page text). The procedure opens in BPMN mode and
back in simple mode unchanged; a hand-made BPMN outside the subset (a shipped procedure) opens in BPMN mode with
the reason.

Everything is done with clicks and typing (Playwright, headless Debian chromium, CSRF on); page.evaluate only
reads (the model before and after the BPMN round trip).
Screenshots: /tmp/xiangflow_simple_{1366,375}.png (the designer), /tmp/xiangflow_simple_case.png.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.studio_support import build_form
from tests.e2e.test_browser_studio import log_in, log_out

pytestmark = pytest.mark.e2e
HOUSEHOLD = "张德明"
NAME = "低保申请审批"
EXTRA = "县民政部门复核"
ISO = re.compile(r"\bP(T?\d+[DWHM])\b")
# the page's simple model, keys sorted (read only)
MODEL = """() => JSON.stringify(window.xiangflowStudio.simple.model, (k, v) => (v && typeof v === 'object' && !Array.isArray(v)
  ? Object.fromEntries(Object.keys(v).sort().map((key) => [key, v[key]])) : v))"""
ELEMENT_ID = re.compile(r"\bb_[a-z0-9_]+|Field_|Text_\d|__")


def no_ids_or_iso(page: Page) -> None:
    text = page.locator("main").inner_text()
    assert not ISO.search(text), ISO.search(text)
    assert not ELEMENT_ID.search(text), ELEMENT_ID.search(text)
    assert "{" not in text and '":' not in text, "JSON on the page"


def block(page: Page, name: str):
    return page.get_by_test_id("block").filter(has=page.locator(".sd-name", has_text=re.compile(rf"^{name}$")))


def add_after(page: Page, name: str, kind: str) -> None:
    """Click the + under the block called name and choose kind from the menu."""
    block(page, name).locator("xpath=following-sibling::div[contains(@class,'sd-gap')][1]//button").click()
    page.get_by_test_id("block-menu").get_by_role("menuitem", name=kind, exact=True).click()


def build_dibao(page: Page, code: str) -> None:
    page.get_by_test_id("nav-studio").click()
    expect(page.get_by_test_id("template-select")).to_have_attribute("data-ready", "true")
    page.get_by_test_id("template-select").select_option(label="三级审批(村→镇→县)")
    page.locator("#simple_code").fill(code)
    page.locator("#simple_name").fill(NAME)
    page.get_by_test_id("simple-create").click()
    expect(page.locator("#studio")).to_have_attribute("data-ready", "true", timeout=20_000)
    expect(page.locator("#studio")).to_have_attribute("data-mode", "simple", timeout=20_000)
    expect(page.get_by_test_id("block").locator(".sd-name")).to_have_text(["村级申请", "村级评议", "乡镇审核", "县级审批", "审批通过"])

    # the application form: 家庭人口 and 申请理由, keys left as generated
    block(page, "村级申请").click()
    form = page.get_by_test_id("block-form")
    build_form(form, [{"type": "number", "label": "家庭人口", "required": True, "min": 1},
                      {"type": "textarea", "label": "申请理由", "required": True}])
    expect(block(page, "村级申请")).to_contain_text("表单 5 项")

    # 5 工作日 on the township step
    block(page, "乡镇审核").click()
    page.get_by_test_id("block-limit-amount").fill("5")
    page.get_by_test_id("block-limit-unit").select_option(label="工作日")
    expect(block(page, "乡镇审核")).to_contain_text("5 个工作日")

    # 家庭人口 ≥ 5 → an extra county department step; otherwise straight on
    add_after(page, "乡镇审核", "条件分支")
    panel = page.get_by_test_id("simple-panel")
    panel.get_by_label("步骤名称").fill("按家庭人口")
    panel.locator("[data-cond='branch-name']").fill("人口较多")
    panel.locator("[data-cond='field']").select_option(label="家庭人口")
    panel.locator("[data-cond='op']").select_option(label="大于或等于")
    panel.locator("[data-cond='value']").fill("5")
    expect(page.locator(".sd-branch-head").first).to_contain_text("家庭人口 ≥ 5")
    branch = page.locator(".sd-branch").first
    branch.get_by_test_id("add-block").first.click()
    page.get_by_test_id("block-menu").get_by_role("menuitem", name="审批", exact=True).click()
    panel.get_by_label("步骤名称").fill(EXTRA)
    panel.get_by_label("由谁审批").select_option(label="县级行业部门(县级)")
    expect(branch.get_by_test_id("block").locator(".sd-name")).to_have_text([EXTRA])
    expect(page.locator(".sd-branch").nth(1)).to_contain_text("否则")


def dry_run(page: Page, size: int) -> list[str]:
    page.get_by_test_id("tab-dryrun").click()
    sample = page.get_by_test_id("dryrun-sample")
    field = sample.locator("fieldset", has_text="村级申请").get_by_label("家庭人口")
    field.fill(str(size))
    page.get_by_test_id("dryrun-run").click()
    expect(page.get_by_test_id("dryrun-outcome")).to_have_text("流程走完,案件状态:已批准")
    expect(page.get_by_test_id("dryrun-steps")).to_contain_text(f"家庭人口:{size}")
    no_ids_or_iso(page)
    steps = [t.split(":")[0] for t in page.get_by_test_id("dryrun-steps").locator("li").all_inner_texts()]
    page.get_by_test_id("tab-simple").click()  # the path is marked on the blocks
    expect(page.locator(".sd-block.on-path .sd-name")).to_have_text(["村级申请", "村级评议", "乡镇审核", "按家庭人口", *steps[3:], "审批通过"])
    return steps


def run_case(page: Page, code: str, size: int, steps: list[tuple[str, str]]) -> None:
    """demo_village files an application of size persons; each (step, user) then approves in the browser."""
    log_in(page, "demo_village")
    page.get_by_role("link", name="发起流程").click()
    page.get_by_label("流程").select_option(code)
    page.get_by_label("农户").select_option(label=f"{HOUSEHOLD}(脱贫不稳定户)")
    page.get_by_role("button", name="发起").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("村级申请")
    case_href = page.get_by_role("link", name=f"{HOUSEHOLD} · {NAME}").get_attribute("href")
    fill(page, {"申请人姓名": HOUSEHOLD, "家庭人口": size, "申请理由": "家庭收入低于当地低保标准"}, "提交")
    no_ids_or_iso(page)
    for step, user in steps:
        log_out(page)
        log_in(page, user)
        page.goto(case_href)
        expect(page.get_by_test_id("current-steps")).to_have_text(step)
        page.get_by_role("link", name=f"办理:{step}").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(step)
        no_ids_or_iso(page)
        values = {"评议意见": "经村民代表评议,同意申请", "已入户核实": True}
        if step == "县级审批":
            values["审批意见"] = "同意纳入低保"  # the template's form field of that name
        fill(page, {k: v for k, v in values.items() if page.get_by_label(re.compile(rf"^\s*{k}( \*)?\s*$")).count()}, "通过")
    page.goto(case_href)
    expect(page.get_by_test_id("case-status")).to_have_text("已批准")
    history = page.get_by_test_id("history")
    for step, _user in steps:
        expect(history).to_contain_text(f"· {step}")
    if EXTRA not in [s for s, _ in steps]:
        expect(history).not_to_contain_text(EXTRA)
    no_ids_or_iso(page)
    log_out(page)


def fill(page: Page, fields: dict, button: str) -> None:
    for label, value in fields.items():
        target = page.get_by_label(re.compile(rf"^\s*{re.escape(label)}( \*)?\s*$"))
        if isinstance(value, bool):
            target.check()
        else:
            target.fill(str(value))
    opinion = page.locator("textarea#opinion")  # the task page's own 审批意见, next to the form's
    if opinion.count():
        opinion.fill("同意")
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^已(提交|通过)「"))


def test_county_admin_builds_dibao_in_the_simple_designer_and_cases_take_both_branches(page: Page, live_server, browser):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    code = f"dibao_{uuid.uuid4().hex[:6]}"
    log_in(page, "demo_admin")
    build_dibao(page, code)
    no_ids_or_iso(page)

    page.get_by_test_id("studio-validate").click()
    expect(page.get_by_test_id("no-problems")).to_have_text("校验通过:可以发布")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.screenshot(path="/tmp/xiangflow_simple_1366.png", full_page=True)

    # dry runs through both branches, told in words
    assert dry_run(page, 6) == ["村级申请", "村级评议", "乡镇审核", EXTRA, "县级审批"]
    assert dry_run(page, 3) == ["村级申请", "村级评议", "乡镇审核", "县级审批"]

    # BPMN mode and back: the same model
    page.get_by_test_id("tab-simple").click()
    before = page.evaluate(MODEL)
    page.get_by_test_id("mode-bpmn").click()
    expect(page.locator("#studio")).to_have_attribute("data-mode", "bpmn", timeout=20_000)
    expect(page.locator("#bpmn-canvas .djs-element[data-element-id]").first).to_be_attached()
    expect(page.locator("#bpmn-canvas")).to_contain_text(EXTRA)
    expect(page.locator("#bpmn-canvas")).to_contain_text("乡镇乡村振兴办")  # lanes per role
    page.locator("#bpmn-canvas .djs-shape", has_text="乡镇审核").first.click()  # the properties panel: 5 工作日, no ISO
    expect(page.locator("#bpmn-properties #bio-properties-panel-xf-due-amount")).to_have_value("5")
    expect(page.locator("#bpmn-properties #bio-properties-panel-xf-day-kind")).to_have_value("working")
    assert not ISO.search(page.locator("#bpmn-properties").inner_text())
    page.get_by_test_id("mode-simple").click()
    expect(page.locator("#studio")).to_have_attribute("data-mode", "simple", timeout=20_000)
    assert page.evaluate(MODEL) == before
    expect(page.get_by_test_id("simple-reason")).to_be_hidden()

    page.get_by_test_id("studio-deploy").click()
    expect(page.get_by_test_id("studio-message")).to_have_text(re.compile(r"^已发布为第 1 版:新发起的案件使用此版本"))
    no_ids_or_iso(page)
    log_out(page)

    # 家庭人口 6: the extra county step; 家庭人口 3: straight to 县级审批
    run_case(page, code, 6, [("村级评议", "demo_village"), ("乡镇审核", "demo_township"), (EXTRA, "demo_dept"),
                             ("县级审批", "demo_dept")])
    page.screenshot(path="/tmp/xiangflow_simple_case.png", full_page=True)
    run_case(page, code, 3, [("村级评议", "demo_village"), ("乡镇审核", "demo_township"), ("县级审批", "demo_dept")])
    assert errors == []


ADD_SCRIPT_TASK = """() => {
  const m = window.xiangflowStudio.modeler;
  const registry = m.get('elementRegistry'), modeling = m.get('modeling');
  const lane = registry.filter(e => e.type === 'bpmn:Lane')[0];
  const shape = modeling.createShape({type: 'bpmn:ScriptTask'}, {x: lane.x + 200, y: lane.y + lane.height - 30}, lane.parent);
  modeling.updateLabel(shape, '自动计算补助');
}"""


def test_a_bpmn_outside_the_simple_subset_opens_in_bpmn_mode_with_the_reason(page: Page, live_server):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, "demo_admin")
    page.get_by_test_id("nav-studio").click()
    expect(page.get_by_test_id("template-select")).to_have_attribute("data-ready", "true")
    page.get_by_test_id("template-select").select_option(label="三级审批(村→镇→县)")
    page.locator("#simple_code").fill(f"dibao_{uuid.uuid4().hex[:6]}")
    page.locator("#simple_name").fill(NAME)
    page.get_by_test_id("simple-create").click()
    expect(page.locator("#studio")).to_have_attribute("data-mode", "simple", timeout=20_000)
    page.get_by_test_id("mode-bpmn").click()
    expect(page.locator("#studio")).to_have_attribute("data-mode", "bpmn", timeout=20_000)
    page.evaluate(ADD_SCRIPT_TASK)  # drawn by hand in bpmn-js: a script task is outside the simple subset
    page.get_by_test_id("studio-save").click()
    expect(page.get_by_test_id("save-status")).to_have_text("已保存")

    page.reload()  # opens in BPMN mode, saying why
    expect(page.locator("#studio")).to_have_attribute("data-ready", "true", timeout=20_000)
    expect(page.locator("#studio")).to_have_attribute("data-mode", "bpmn", timeout=20_000)
    reason = page.get_by_test_id("simple-reason")
    expect(reason).to_contain_text(re.compile(r"^不能用简易模式打开:.*「自动计算补助」"))  # the element by its name
    page.get_by_test_id("mode-simple").click()  # asking again: still BPMN, still why
    expect(page.get_by_test_id("studio-message")).to_have_text("此流程图超出简易模式的范围,仍在 BPMN 高级模式")
    expect(page.locator("#studio")).to_have_attribute("data-mode", "bpmn", timeout=20_000)
    expect(reason).to_contain_text("自动计算补助")

    # a shipped procedure (decision tables, boundary timers) opens in BPMN mode with its reason too
    log_out(page)
    log_in(page, "demo_sysadmin")
    page.goto("/studio/")
    page.locator("[data-procedure='housing_renovation'][data-version='1']").get_by_role("button", name="打开为草稿").click()
    expect(page.locator("#studio")).to_have_attribute("data-ready", "true", timeout=20_000)
    expect(page.locator("#studio")).to_have_attribute("data-mode", "bpmn", timeout=20_000)
    expect(reason).to_contain_text(re.compile(r"^不能用简易模式打开:.+简易模式不支持"))
    assert errors == []


def test_unsaved_work_is_guarded_saved_before_leaving_and_the_stale_banner_clears(page: Page, live_server):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, "demo_admin")
    page.get_by_test_id("nav-studio").click()
    expect(page.get_by_test_id("template-select")).to_have_attribute("data-ready", "true")
    page.get_by_test_id("template-select").select_option(label="三级审批(村→镇→县)")
    page.locator("#simple_code").fill(f"dibao_{uuid.uuid4().hex[:6]}")
    page.locator("#simple_name").fill(NAME)
    page.get_by_test_id("simple-create").click()
    expect(page.locator(".flash")).to_have_text("已从模板新建流程草稿")
    draft_url = page.url

    # an edit marks the draft unsaved; the 保存 message replaces the banner of the last page, then clears itself
    # (after 8 s: the page's clock is Playwright's, moved on instead of waited for)
    page.clock.install()
    block(page, "乡镇审核").click()
    page.get_by_test_id("simple-panel").get_by_label("步骤名称").fill("乡镇复核")
    expect(page.get_by_test_id("save-status")).to_have_text("有未保存的修改")
    page.get_by_test_id("studio-save").click()
    expect(page.get_by_test_id("studio-message")).to_have_text("草稿已保存")
    expect(page.locator(".flash")).to_have_count(0)
    page.clock.run_for(8_000)
    expect(page.get_by_test_id("studio-message")).to_have_text("", timeout=12_000)

    # closing the tab with unsaved work asks first
    page.get_by_test_id("simple-panel").get_by_label("步骤名称").fill("乡镇审核")
    dialogs: list[str] = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    page.close(run_before_unload=True)
    expect(page.locator("#studio")).to_be_visible()  # dismissed: still here
    assert dialogs == ["beforeunload"]

    # following a link inside the site saves first: the edit is there when the draft is opened again
    page.get_by_role("link", name="返回列表").click()
    expect(page).to_have_url(re.compile(r"/studio/$"))
    page.goto(draft_url)
    expect(page.locator("#studio")).to_have_attribute("data-mode", "simple", timeout=20_000)
    expect(page.get_by_test_id("block").locator(".sd-name")).to_have_text(["村级申请", "村级评议", "乡镇审核", "县级审批", "审批通过"])
    assert errors == []


def test_every_block_kind_is_added_from_the_menu_set_in_its_panel_and_accepted_by_the_server(page: Page, live_server):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, "demo_admin")
    page.get_by_test_id("nav-studio").click()
    expect(page.get_by_test_id("template-select")).to_have_attribute("data-ready", "true")
    page.get_by_test_id("template-select").select_option(label="三级审批(村→镇→县)")
    page.locator("#simple_code").fill(f"kinds_{uuid.uuid4().hex[:6]}")
    page.locator("#simple_name").fill("各类步骤")
    page.get_by_test_id("simple-create").click()
    expect(page.locator("#studio")).to_have_attribute("data-mode", "simple", timeout=20_000)
    panel = page.get_by_test_id("simple-panel")

    add_after(page, "村级评议", "公示")
    panel.get_by_label("步骤名称").fill("村级公示")
    panel.get_by_label("公示公文").select_option(label="村级公示")
    panel.get_by_label("公示期内有异议时退回到").select_option(label="村级评议")
    add_after(page, "村级公示", "抄送")
    panel.get_by_label("抄送给").select_option(label="乡镇分管领导(乡镇级)")
    add_after(page, "抄送", "定时/等待")
    page.get_by_test_id("block-wait-amount").fill("3")
    add_after(page, "乡镇审核", "并行分支")
    branches = page.locator(".sd-group", has=page.locator(".sd-name", has_text="并行分支")).locator(".sd-branch")
    for i, name in enumerate(("县民政部门会签", "县领导小组审批")):
        branches.nth(i).get_by_test_id("add-block").first.click()
        page.get_by_test_id("block-menu").get_by_role("menuitem", name="审批", exact=True).click()
        panel.get_by_label("步骤名称").fill(name)
    panel.get_by_label("由谁审批").select_option(label="县领导小组(县级)")
    page.get_by_test_id("block-sign").select_option(label="按比例会签")
    page.get_by_test_id("block-percent").fill("60")
    block(page, "县民政部门会签").click()
    page.get_by_test_id("block-sign").select_option(label="会签(全部同意)")
    add_after(page, "县级审批", "子流程")
    panel.get_by_label("发起的流程").select_option(label="农村危房改造")
    page.locator(".fb-check", has_text="家庭人口").count()  # no such field: nothing to pass
    add_after(page, "乡镇审核", "条件分支")
    page.locator("[data-cond='field']").select_option(label="已入户核实")
    page.locator("[data-cond='value']").select_option(label="否")
    cond = page.locator(".sd-group", has=page.locator(".sd-name", has_text=re.compile("^条件分支$"))).locator(".sd-branch").first
    cond.get_by_test_id("add-block").last.click()
    page.get_by_test_id("block-menu").get_by_role("menuitem", name="结束", exact=True).click()
    panel.get_by_label("结束时的案件状态").select_option(label="未通过")

    page.get_by_test_id("studio-validate").click()
    expect(page.get_by_test_id("studio-message")).to_have_text(re.compile(r"^校验(通过|发现)"))
    expect(page.get_by_test_id("simple-reason")).to_be_hidden()
    kinds = page.get_by_test_id("block").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert {"start", "approval", "notice", "cc", "wait", "parallel", "condition", "subprocess", "end"} <= set(kinds)
    no_ids_or_iso(page)
    page.screenshot(path="/tmp/xiangflow_simple_kinds.png", full_page=True)
    problems = page.get_by_test_id("problem").all_inner_texts()
    assert not problems, problems
    assert errors == []
