"""Chinese domain words and their one English identifier each; the UI's labels come from here.

| 中文 | identifier |
|---|---|
| 案件/流程实例 | case |
| 流程 | procedure |
| 待办 / 已办 / 我发起的 | todo / done / started |
| 通过 / 不通过 / 退回 | approve / reject / return |
| 审批意见 | opinion |
| 公示 | public_notice |
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
"""

ACTION_LABELS = {
    "start": "发起",
    "approve": "通过",
    "reject": "不通过",
    "return": "退回",
    "timer_fired": "定时触发",
}

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

TASK_STATUS_LABELS = {"open": "待办", "completed": "已办", "cancelled": "已取消"}
