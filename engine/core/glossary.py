"""Chinese domain words and their one English identifier each; the UI's labels come from here.

| 中文 | identifier |
|---|---|
| 案件/流程实例 | case |
| 流程 | procedure |
| 待办 / 已办 / 我发起的 | todo / done / started |
| 通过 / 不通过 / 退回 | approve / reject / return |
| 审批意见 | opinion |
| 委派 / 处理完成并交还 | delegate / resolve |
| 加签(前加签 / 后加签) | add_sign (before / after), 加签人 co-signer |
| 公示 | public_notice |
| 出具(公示、公告) | issue (a step with ``noticeKind``) |
| 入户核查 | household_check |
| 民主评议 | village_review |
| 镇复核 | township_recheck |
| 部门审定 | dept_decision |
| 县级公告 | county_announcement |
| 缓退 | delayed_exit |
| 回访 | follow_up_visit |
| 帮扶责任人 | assistance_cadre |
| 辖区 | jurisdiction (scope) |
| 超期 | overdue |
| 简易模式 / BPMN 高级模式 | simple designer (``engine/studio/simple``) / BPMN mode |
| 条件分支 / 否则 | condition block / otherwise |
| 并行分支 | parallel block |
| 会签 / 或签 / 按比例会签 | sign mode ``all`` / ``any`` / ``ratio`` |
| 按流程抄送 | cc by the diagram (``ccRole``) |
| 须先出具退出告知书 | required notice (``requiresNotice``) |
| 本案发起日期 | case start (``notBefore: caseStart``) |
| 定时/等待 | wait block |
"""

from typing import Any

ACTION_LABELS = {
    "start": "发起",
    "approve": "通过",
    "reject": "不通过",
    "vote_reject": "不同意",  # a 会签/或签 member's vote against (the step's rule decides the outcome)
    "return": "退回",
    "issue": "出具",
    "timer_fired": "定时触发",
    "event": "提出异议",
    "withdraw": "撤回",
    "claim": "认领",
    "unclaim": "取消认领",
    "transfer": "转办",
    "delegate": "委派",
    "resolve": "委派处理完成",
    "add_sign": "加签",
    "sign_approve": "加签人同意",
    "cc": "抄送",
    "urge": "催办",
    "attachment_added": "上传附件",
    "linked_case_started": "发起关联案件",
    "cc_delivered": "按流程抄送",
    "linked_from": "由关联案件发起",
    "timer_incident": "定时器故障",
    "timer_retry": "定时器重试",
    "timer_skipped": "定时器跳过",
    "notice_issued": "签发公示公告",
    "version_migrated": "迁移到新版本",
}

# how cases are counted by their subject's kind: "3 户", "1 个项目"
SUBJECT_COUNT_UNITS = {"household": "户", "project": "个项目"}


def count_of(cases: list[Any]) -> str:
    """How many subjects a list of cases covers, in words ("3 户", "1 个项目"; mixed kinds: "2 件")."""
    units = {SUBJECT_COUNT_UNITS.get(c.subject.kind, "件") for c in cases}
    return f"{len(cases)} {units.pop() if len(units) == 1 else '件'}"


CASE_STATUS_LABELS = {
    "running": "办理中",
    "exited": "已退出",
    "delayed_exit": "缓退",
    "approved": "已批准",
    "rejected": "未通过",
    "completed": "已办结",
    "identified": "已认定",
    "withdrawn": "已撤回",
}

TASK_STATUS_LABELS = {"open": "待办", "completed": "已办", "cancelled": "已取消", "waiting": "等待加签人"}
