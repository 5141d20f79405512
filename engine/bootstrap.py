"""Set up a database: run migrations, load regions and roles, deploy procedures, demo data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from engine.access import regions as regions_mod
from engine.access.directory import hash_password
from engine.core import settings
from engine.models import Region, RegionLevel, Subject, User
from engine.procedures.definitions import check_context, read_folder
from engine.procedures.expressions import CHINA_TZ
from engine.uow import UnitOfWork

DEMO_PASSWORD = "demo12345"
DEMO_COUNTY = "510921000000"  # 四川省遂宁市蓬溪县
DEMO_TOWNSHIP = "510921107000"  # 宝梵镇
OTHER_TOWNSHIP = "510921100000"  # 赤城镇, for jurisdiction tests and demo contrast
DEMO_OFFICES = ((DEMO_TOWNSHIP, "宝梵镇人民政府"), (DEMO_COUNTY, "蓬溪县乡村振兴局"))  # and the demo village's committee


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    cfg = Config(str(settings.ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(settings.ROOT / "migrations"))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def load_regions(work: UnitOfWork, csv_path: Path = settings.REGIONS_CSV) -> int:
    """Insert the regions of the CSV that are not there yet; return how many were added."""
    existing = set(work.session.scalars(select(Region.code)))
    added = 0
    for row in regions_mod.read_csv(csv_path):
        if row["code"] in existing:
            continue
        work.session.add(Region(code=row["code"], name=row["name"], level=RegionLevel(row["level"]),
                                parent_code=row["parent_code"]))
        added += 1
        if added % 500 == 0:
            work.session.flush()
    work.session.flush()
    return added


def setup_database(engine: Engine, clock, demo: bool = True, demo_cases: bool = True) -> None:
    """Migrate, then load roles, regions and procedures, and optionally the demo data."""
    from engine.core.db import make_session_factory

    migrate(engine)
    with UnitOfWork(make_session_factory(engine), clock) as work:
        work.directory.ensure_roles()
        load_regions(work)
        deploy_all(work)
        if demo:
            load_demo(work, with_cases=demo_cases)


def deploy_all(work: UnitOfWork, deployed_by: str = "system") -> list[str]:
    """Deploy every procedure folder under workflows/; return the codes deployed."""
    roles = set(work.directory.role_levels())
    folders = sorted(p for p in settings.WORKFLOWS_DIR.iterdir() if (p / "procedure.json").is_file())
    bundles = [read_folder(folder, settings.FORMS_DIR) for folder in folders]
    # the shipped procedures pass data to each other (startsProcedure + passData), whatever order they deploy in
    context = check_context(roles, passed_in=work.definitions.passed_in([b.files for b in bundles]))
    for bundle in bundles:
        work.definitions.deploy(bundle, deployed_by, roles, context)
    return [b.code for b in bundles]


def first_village(work: UnitOfWork, township: str) -> str:
    return work.session.scalars(
        select(Region.code).where(Region.parent_code == township).order_by(Region.code).limit(1)
    ).one()


DEMO_HOUSEHOLDS = (
    # (name, 18-digit ID with a valid check digit, members, category)
    ("张德明", "510921196503120011", 4, "脱贫不稳定户"),
    ("李秀英", "510921197208230028", 3, "边缘易致贫户"),
    ("王建国", "510921195811050030", 2, "突发严重困难户"),
    ("刘桂芳", "510921198001150041", 5, "脱贫不稳定户"),
    ("陈永福", "510921196909090051", 3, "边缘易致贫户"),
    ("周玉兰", "510921197403180070", 4, "脱贫不稳定户"),
)


DEMO_PROJECTS = (
    ("宝梵镇柑橘产业园提升项目", {"project_type": "产业发展", "budget_yuan": 800000}),
    ("村道硬化及安全防护项目", {"project_type": "基础设施", "budget_yuan": 450000}),
)


def load_demo(work: UnitOfWork, with_cases: bool = True) -> dict[str, str]:
    """Create demo users and households, and cases in progress unless with_cases is False.

    Idempotent: does nothing when demo users exist. Returns username → region code.
    """
    if work.session.scalar(select(func.count(User.id)).where(User.is_demo.is_(True))):
        return {}
    village = first_village(work, DEMO_TOWNSHIP)
    other_village = first_village(work, OTHER_TOWNSHIP)
    # the system admin holds system_admin in every province of the region table: it covers all regions
    provinces = work.session.scalars(select(Region.code).where(Region.parent_code.is_(None)).order_by(Region.code)).all()
    users = {
        "demo_village": ("宝梵镇村干部(演示)", [("village_cadre", village)]),
        "demo_township": ("宝梵镇乡村振兴办(演示)", [("township_officer", DEMO_TOWNSHIP)]),
        "demo_dept": ("蓬溪县乡村振兴局(演示)", [("county_department", DEMO_COUNTY)]),
        "demo_county": ("蓬溪县领导小组(演示)", [("county_leader", DEMO_COUNTY)]),
        # three more leading-group members: 项目库 领导小组审定 is a 会签 of all of them (engine/runtime/countersign.py)
        "demo_leader1": ("蓬溪县领导小组成员甲(演示)", [("county_leader", DEMO_COUNTY)]),
        "demo_leader2": ("蓬溪县领导小组成员乙(演示)", [("county_leader", DEMO_COUNTY)]),
        "demo_leader3": ("蓬溪县领导小组成员丙(演示)", [("county_leader", DEMO_COUNTY)]),
        # 帮扶责任人: 防返贫监测's 制定帮扶计划, 落实帮扶措施 and monthly visits go to this role in the village
        "demo_helper": ("宝梵镇帮扶责任人(演示)", [("assistance_cadre", village)]),
        "demo_clerk": ("宝梵镇办公室(演示)", [("office_clerk", DEMO_TOWNSHIP)]),
        "demo_admin": ("蓬溪县管理员(演示)", [("admin", DEMO_COUNTY)]),
        "demo_sysadmin": ("系统管理员(演示)", [("system_admin", code) for code in provinces]),
        "demo_other_village": ("赤城镇村干部(演示)", [("village_cadre", other_village)]),
        "demo_other_township": ("赤城镇乡村振兴办(演示)", [("township_officer", OTHER_TOWNSHIP)]),
    }
    created = {}
    demo_hash = hash_password(DEMO_PASSWORD)  # one argon2 hash (with its salt) for every demo account
    for username, (display, grants) in users.items():
        created[username] = work.directory.create_user(username, display, None, grants, is_demo=True,
                                                       password_hash=demo_hash)
    for name, id_number, members, category in DEMO_HOUSEHOLDS:
        work.session.add(Subject(kind="household", region_code=village, name=name, id_number=id_number,
                                 attrs={"members": members, "category": category}))
    work.session.add(Subject(kind="household", region_code=other_village, name="赵大山",
                             id_number="510921197705060066", attrs={"members": 4, "category": "脱贫不稳定户"}))
    for name, attrs in DEMO_PROJECTS:
        work.session.add(Subject(kind="project", region_code=village, name=name, id_number=None, attrs=attrs))
    work.session.flush()
    demo_office_keys(work, village)
    if with_cases:
        _demo_cases(work, created)
    return {u: g[0][1] for u, (d, g) in users.items()}


def demo_office_keys(work: UnitOfWork, village: str) -> None:
    """A demo-CA signing key for each demo office that has none (the village committee, 宝梵镇, 蓬溪县),
    so the demo's notices can be issued at once."""
    from engine.notices.pki import office_code

    keys = work.keys
    village_name = work.session.get_one(Region, village).name
    for region_code, name in ((village, village_name), *DEMO_OFFICES):
        if keys.active(office_code(region_code, name)) is None:
            keys.keygen(region_code, name)


def _demo_cases(work: UnitOfWork, users: dict[str, User]) -> None:
    """四步法 exit cases waiting at each level: 民主评议, 村级公示, 镇复核, 部门审定, 县级公告.

    They are run on a clock that starts nine days ago so that the 村级公示 period of the
    cases past it has really ended (their village issued one notice for the three of them); the
    one still in its notice period (its notice issued yesterday) ends in six days.
    """
    from engine import demo_data as d
    from engine.core.clock import FixedClock

    clock = FixedClock(work.clock.now() - timedelta(days=9))
    past = work.with_clock(clock)  # the same services on this session, under the demo's clock
    cases, signatures = past.cases, past.signatures
    actor = {name: work.directory.actor(user) for name, user in users.items()}
    households = work.session.scalars(
        select(Subject).where(Subject.kind == "household", Subject.name.in_(
            ["李秀英", "王建国", "刘桂芳", "陈永福", "周玉兰"])).order_by(Subject.id)).all()
    by_name = {s.name: cases.start_case("monitoring_exit", s.id, actor["demo_village"]).id for s in households}

    def step(name: str, who: str, data: dict) -> None:
        row = next(t for t in work.inbox.case_tasks(by_name[name]) if t.status.value == "open")
        if signatures.rule_for(row) is not None:  # 入户核查: the household signs on the cadre's tablet
            signatures.add_signature(row.id, actor[who], d.signature_png(row.case_id))
        today = clock.now().astimezone(CHINA_TZ).date()  # the demo's own day: its dates are not before the start
        cases.complete_task(row.id, actor[who], "approve", "情况属实,同意。", d.on_day(data, today))

    for name in by_name:
        step(name, "demo_village", d.HOUSEHOLD_CHECK)
    notices = past.notices

    def issue_village_notice(names: list[str]) -> None:  # 出具村级公示: the period starts now
        notices.issue(actor["demo_village"], "monitoring_exit", "village_public_notice",
                      [by_name[n] for n in names], d.VILLAGE_NOTICE_FIELDS)

    for name in ("刘桂芳", "陈永福", "周玉兰"):
        step(name, "demo_village", d.VILLAGE_REVIEW)
    issue_village_notice(["刘桂芳", "陈永福", "周玉兰"])
    clock.advance(timedelta(days=8))
    cases.fire_due_timers()
    step("王建国", "demo_village", d.VILLAGE_REVIEW)
    issue_village_notice(["王建国"])  # in its 村级公示 period
    for name in ("陈永福", "周玉兰"):
        step(name, "demo_township", d.TOWNSHIP_RECHECK)
    step("周玉兰", "demo_dept", d.DEPT_DECISION)
