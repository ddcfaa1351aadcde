"""What congresses follow up: suggestions, livelihood projects, supervision items, warnings."""

from __future__ import annotations

from typing import NamedTuple

from contracts.samples._base import (
    COUNTY,
    DAY,
    HOUR,
    NOW,
    UNIT_CODES,
    UNITS,
    Context,
    Record,
    Weighted,
    date_at,
    days_from_epoch,
    timestamp,
)

# --- suggestion -------------------------------------------------------------------------------


class Topic(NamedTuple):
    subject: str
    unit: str
    problem: str


_TOPICS = (
    Topic("加快农村危桥改造", "u-jtj", "部分农村桥梁建成年代久远、荷载等级低，存在安全隐患"),
    Topic(
        "推进老旧小区加装电梯", "u-zjj", "老旧小区老年人上下楼困难，加装电梯意见难统一、审批环节多"
    ),
    Topic("完善农村养老服务体系", "u-mzj", "农村独居和高龄老人多，助餐、助医等上门服务供给不足"),
    Topic("缓解中小学校门口交通拥堵", "u-gaj", "上下学高峰接送车辆集中，校门口拥堵严重"),
    Topic("加强农村生活污水治理", "u-sthjj", "部分村庄污水管网覆盖不全，已建设施运行维护不到位"),
    Topic("提升基层医疗服务能力", "u-wjw", "村卫生室药品不全、全科医生不足，群众看病仍需往城区跑"),
    Topic("优化城乡公交线路布局", "u-jtj", "偏远村庄公交班次少、换乘不便"),
    Topic("支持小微企业纾困发展", "u-fgw", "小微企业融资难、融资贵，惠企政策知晓度不高"),
    Topic(
        "推进生活垃圾分类长效管理", "u-cgj", "垃圾分类投放点设置不合理，前端分类、后端处置衔接不畅"
    ),
    Topic("扩大普惠性幼儿园学位供给", "u-jyj", "新建小区集中区域学位紧张，入园难问题突出"),
    Topic("加强电动自行车安全管理", "u-gaj", "楼道停放和飞线充电现象屡禁不止，火灾隐患突出"),
    Topic("推进高标准农田建设", "u-nyncj", "部分农田灌排设施老化，机耕道路不完善"),
    Topic("规范预付式消费管理", "u-scjgj", "一些经营者卷款跑路，消费者退费难、维权难"),
)
_MEASURES = (
    "加大财政投入，将相关工作纳入年度民生实事项目",
    "明确部门职责分工，建立定期会商和督查机制",
    "制定实施方案和时间表，分年度有序推进",
    "加强宣传引导，鼓励社会力量参与",
    "建立群众满意度评价机制，定期通报工作进展",
    "总结推广试点经验，形成可复制的做法",
)
_SUGGESTION_STATUS = Weighted(
    [
        ("submitted", 3),
        ("accepted", 5),
        ("assigned", 15),
        ("replied", 25),
        ("evaluated", 47),
        ("withdrawn", 5),
    ]
)
_SATISFACTION = Weighted([("satisfied", 75), ("basically_satisfied", 20), ("not_satisfied", 5)])
_EVALUATIONS = {
    "satisfied": ("答复具体，措施有力，满意。", "承办单位主动沟通，办理认真。"),
    "basically_satisfied": ("答复基本到位，希望加快落实进度。", "部分措施尚需细化。"),
    "not_satisfied": ("答复避重就轻，问题没有实质性解决。", "希望重新办理。"),
}
_SESSION = f"{COUNTY}第十八届人民代表大会第五次会议"


def suggestion(ctx: Context) -> Record:
    topic = ctx.pick(_TOPICS)
    kind = "motion" if ctx.chance(0.1) else "suggestion"
    status = _SUGGESTION_STATUS(ctx.rng)
    at_session = status not in ("submitted", "accepted", "assigned") and ctx.chance(0.6)
    if at_session:
        submitted = ctx.moment(3, 8)
    elif status in ("submitted", "accepted", "assigned"):
        submitted = ctx.moment(200, 290)
    else:
        submitted = ctx.moment(20, 140)
    title = f"关于{topic.subject}的{'议案' if kind == 'motion' else '建议'}"
    measures = ctx.rng.sample(_MEASURES, 3)
    record: Record = {"kind": kind}
    if status != "submitted" and ctx.chance(0.85):
        record["number"] = f"第{ctx.between(1, 350):04d}号"
    if ctx.chance(0.9):
        record["session"] = _SESSION if at_session else "闭会期间"
    record["title"] = title
    record["content"] = (
        f"近年来，我市在{topic.subject}方面做了大量工作，但在走访选民和进站接待中，群众反映"
        f"{topic.problem}。为此建议：一是{measures[0]}；二是{measures[1]}；三是{measures[2]}。"
    )
    signers = ctx.between(10, 15) if kind == "motion" else ctx.between(1, 5)
    record["deputy_ids"] = ctx.refs("deputy", signers)
    record["submitted_at"] = timestamp(submitted)
    record["status"] = status
    if status == "submitted":
        return record
    accepted = ctx.later(submitted, DAY, 10 * DAY, office=True)
    if status == "withdrawn":
        if ctx.chance(0.5):
            record["accepted_at"] = timestamp(accepted)
        record["withdrawn_at"] = timestamp(ctx.later(accepted, DAY, 20 * DAY))
        return record
    record["accepted_at"] = timestamp(accepted)
    if status == "accepted":
        return record
    assigned = ctx.later(accepted, DAY, 15 * DAY, office=True)
    record["assigned_at"] = timestamp(assigned)
    record["handling_unit"] = ctx.unit(topic.unit)
    if ctx.chance(0.3):
        others = [code for code in UNIT_CODES if code != topic.unit]
        record["co_handling_units"] = [ctx.unit(c) for c in ctx.rng.sample(others, 2)]
    if status == "assigned":
        return record
    replied = ctx.later(assigned, 20 * DAY, 90 * DAY, office=True)
    record["reply"] = (
        f"{COUNTY}{UNITS[topic.unit]}答复：收到您提出的《{title}》后，我单位高度重视，专题研究"
        f"并实地调研。下一步，我们将{measures[0]}，{measures[2]}。感谢您对我市工作的关心和支持。"
    )
    record["replied_at"] = timestamp(replied)
    if status == "replied":
        return record
    satisfaction = _SATISFACTION(ctx.rng)
    record["satisfaction"] = satisfaction
    if ctx.chance(0.6):
        record["evaluation_comment"] = ctx.pick(_EVALUATIONS[satisfaction])
    record["evaluated_at"] = timestamp(ctx.later(replied, DAY, 20 * DAY))
    return record


# --- livelihood project -----------------------------------------------------------------------


class Project(NamedTuple):
    title: str
    unit: str
    unit_cost: int  # yuan per unit of n
    low: int
    high: int
    description: str


PROJECTS = (
    Project(
        "新建改造农村危桥{n}座",
        "u-jtj",
        420_000,
        10,
        40,
        "对排查出的{n}座四、五类农村危桥进行拆除重建或加固改造。",
    ),
    Project(
        "完成老旧小区改造{n}个",
        "u-zjj",
        3_200_000,
        5,
        30,
        "对{n}个老旧小区实施雨污分流、屋面防水、道路和停车设施改造。",
    ),
    Project(
        "既有住宅加装电梯{n}部",
        "u-zjj",
        150_000,
        20,
        120,
        "对符合条件的既有住宅加装电梯给予补贴，全年完成{n}部。",
    ),
    Project(
        "新建社区老年助餐点{n}个",
        "u-mzj",
        160_000,
        10,
        50,
        "在城乡社区新建老年助餐点{n}个，为老年人提供助餐服务。",
    ),
    Project(
        "新增公办幼儿园学位{n}个",
        "u-jyj",
        30_000,
        300,
        1500,
        "新建、改扩建公办幼儿园，新增学位{n}个。",
    ),
    Project("建设口袋公园{n}个", "u-cgj", 800_000, 5, 20, "利用边角地、闲置地建设口袋公园{n}个。"),
    Project(
        "新建公共充电桩{n}个",
        "u-fgw",
        20_000,
        200,
        1000,
        "在公共停车场和居民小区新建公共充电桩{n}个。",
    ),
    Project(
        "改造农村供水管网{n}公里",
        "u-slj",
        500_000,
        20,
        120,
        "改造老旧农村供水管网{n}公里，提升供水保障能力。",
    ),
    Project("新建改建农贸市场{n}家", "u-scjgj", 2_000_000, 3, 10, "新建改建标准化农贸市场{n}家。"),
    Project(
        "新增公共停车泊位{n}个",
        "u-cgj",
        15_000,
        500,
        3000,
        "挖潜新增公共停车泊位{n}个，缓解停车难。",
    ),
    Project(
        "中小学食堂“明厨亮灶”改造{n}所",
        "u-jyj",
        60_000,
        20,
        80,
        "完成{n}所中小学食堂“明厨亮灶”改造。",
    ),
    Project(
        "新建改造健身步道{n}公里",
        "u-wtlj",
        400_000,
        10,
        50,
        "新建改造健身步道{n}公里，打造“15分钟健身圈”。",
    ),
    Project(
        "为{n}户困难家庭实施适老化改造",
        "u-mzj",
        8_000,
        300,
        1500,
        "为{n}户经济困难老年人家庭实施居家适老化改造。",
    ),
)
_MILESTONES = (
    "完成项目立项和方案设计",
    "完成招投标",
    "全面开工建设",
    "完成过半建设任务",
    "完成主体工程",
    "完成全部建设任务",
    "竣工验收并投入使用",
)
_PROJECT_STATUS = Weighted(
    [("in_progress", 50), ("completed", 25), ("delayed", 15), ("planned", 10)]
)


def livelihood_project(ctx: Context) -> Record:
    project = ctx.pick(PROJECTS)
    status = _PROJECT_STATUS(ctx.rng)
    n = ctx.between(project.low, project.high)
    year = {"planned": 2027, "completed": 2025 if ctx.chance(0.3) else 2026}.get(status, 2026)
    budget = n * project.unit_cost * ctx.between(85, 120) // 100 // 1000 * 100_000  # in fen
    milestones, done = _milestones(ctx, year, status)
    if status == "completed":
        progress = 100
    elif status == "planned":
        progress = 0
    else:
        share = 100 * done // len(milestones)
        progress = max(5, min(95, share + ctx.between(-10, 10)))
    record: Record = {"year": year, "title": project.title.format(n=n)}
    if ctx.chance(0.9):
        record["description"] = project.description.format(n=n)
    if ctx.chance(0.9):
        record["voted"] = ctx.chance(0.6)
    record["budget"] = _yuan(budget)
    if progress and ctx.chance(0.9):
        record["spent"] = _yuan(min(budget, budget * progress * ctx.between(80, 110) // 10_000))
    elif ctx.chance(0.5):
        record["spent"] = "0.00"
    record["responsible_unit"] = ctx.unit(project.unit)
    if ctx.chance(0.95):
        record["milestones"] = milestones
    record["progress"] = progress
    record["status"] = status
    return record


def _milestones(ctx: Context, year: int, status: str) -> tuple[list[Record], int]:
    """Milestones in due order, with ``done`` dates as ``status`` implies; and how many are done."""
    titles = sorted(ctx.rng.sample(range(len(_MILESTONES)), ctx.between(3, 6)))
    first = days_from_epoch(year, 1, 1)
    last = days_from_epoch(year, 10 if status == "completed" else 12, 20)
    step = (last - first - 60) // len(titles)
    slipping = True  # a delayed project keeps its last past-due milestone open
    milestones: list[Record] = []
    done = 0
    for position, title in reversed(list(enumerate(titles))):
        due = first + 60 + step * (position + 1) - ctx.between(0, 20)
        item: Record = {"title": _MILESTONES[title], "due": date_at(due)}
        past = due < NOW // DAY
        if status == "completed" or (past and not (status == "delayed" and slipping)):
            item["done"] = date_at(min(due - ctx.between(-5, 15), NOW // DAY - 1))
            done += 1
        elif ctx.chance(0.6):
            item["done"] = None
        if past:
            slipping = False
        milestones.append(item)
    milestones.reverse()
    return milestones, done


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


# --- supervision item -------------------------------------------------------------------------

_SUPERVISION = (
    (
        "inspection",
        "《中华人民共和国大气污染防治法》执法检查",
        "u-sthjj",
        "部分工地扬尘防治措施落实不到位，裸土未覆盖、车辆未冲洗即出场",
    ),
    (
        "inspection",
        "《中华人民共和国食品安全法》执法检查",
        "u-scjgj",
        "校园周边小餐饮店证照不全，从业人员健康证明过期",
    ),
    (
        "inspection",
        "《江苏省养老服务条例》执法检查",
        "u-mzj",
        "部分养老机构消防设施老化，护理人员持证上岗率偏低",
    ),
    (
        "survey",
        "关于农村养老服务体系建设情况的专题调研",
        "u-mzj",
        "村级居家养老服务站运营经费不足，部分站点长期闲置",
    ),
    (
        "survey",
        "关于优化营商环境工作情况的专题调研",
        "u-xzspj",
        "涉企审批事项办理时限仍偏长，“一网通办”事项覆盖不全",
    ),
    (
        "survey",
        "关于城乡供水一体化建设情况的专题调研",
        "u-slj",
        "部分老旧管网漏损率偏高，末梢水压不足",
    ),
    (
        "hearing",
        "关于医疗保障工作情况的专题询问",
        "u-ybj",
        "异地就医直接结算覆盖面不够，门诊慢特病认定周期长",
    ),
    (
        "hearing",
        "听取和审议生态环境状况和环境保护目标完成情况的报告",
        "u-sthjj",
        "个别断面水质波动，入河排污口整治进度滞后",
    ),
)
_SUPERVISION_STATUS = Weighted(
    [("open", 15), ("rectifying", 30), ("rectified", 20), ("verified", 35)]
)


def supervision_item(ctx: Context) -> Record:
    source, topic, unit, problem = ctx.pick(_SUPERVISION)
    status = _SUPERVISION_STATUS(ctx.rng)
    found = ctx.moment(0, 150) if status in ("rectified", "verified") else ctx.moment(100, 290)
    record: Record = {"source": source}
    if ctx.chance(0.9):
        record["topic"] = topic
    record["problem"] = f"{ctx.town()}{problem}，涉及点位{ctx.between(2, 30)}处。"
    record["responsible_unit"] = ctx.unit(unit)
    record["found_at"] = timestamp(found)
    if ctx.chance(0.9):
        record["deadline"] = date_at(found // DAY + ctx.between(30, 180))
    record["status"] = status
    if status == "rectifying" and ctx.chance(0.5):
        record["rectification"] = "已制定整改方案，明确责任人和时间节点，正在逐项整改。"
    if status in ("rectified", "verified"):
        rectified = ctx.later(found, 15 * DAY, 120 * DAY)
        record["rectification"] = (
            f"已完成整改：建立问题台账，逐项销号，共整改点位{ctx.between(2, 30)}处，"
            "并建立长效监管机制。"
        )
        record["rectified_at"] = timestamp(rectified)
        if status == "verified":
            record["verified_at"] = timestamp(ctx.later(rectified, 5 * DAY, 30 * DAY))
    return record


# --- warning ----------------------------------------------------------------------------------

_WARNING_KIND = Weighted(
    [("overdue_opinion", 40), ("overdue_task", 25), ("milestone_slip", 25), ("other", 10)]
)
_SUBJECT = {
    "overdue_opinion": "opinion",
    "overdue_task": "task",
    "milestone_slip": "livelihood_project",
    "other": "supervision_item",
}
_WARNING_LEVEL = Weighted([("yellow", 50), ("orange", 35), ("red", 15)])
_OPINION_TITLES = ("路灯不亮", "学校门口交通拥堵", "老旧小区加装电梯", "河道发黑发臭", "小区停车难")
_MESSAGES = {
    "overdue_opinion": "民意“{what}”",
    "overdue_task": "交办任务“督办{what}问题”",
    "milestone_slip": "民生实事“{project}”第{k}个节点",
    "other": "监督问题清单事项整改",
}


def warning(ctx: Context) -> Record:
    kind = _WARNING_KIND(ctx.rng)
    level = _WARNING_LEVEL(ctx.rng)
    raised = ctx.moment(0, 295, office=False)
    days = ctx.between(1, 7) if level == "yellow" else ctx.between(1, 15)
    if level == "red":
        days += 15
    project = ctx.pick(PROJECTS)
    subject = _MESSAGES[kind].format(
        what=ctx.pick(_OPINION_TITLES),
        project=project.title.format(n=ctx.between(project.low, project.high)),
        k=ctx.between(1, 5),
    )
    if level == "yellow":
        message, due = f"{subject}距期限还剩{days}天，请抓紧办理", raised + days * DAY
    else:
        message, due = f"{subject}已逾期{days}天", raised - days * DAY
        if level == "red":
            message += "，已提请人大常委会督办"
    if kind == "milestone_slip":
        node = ctx.unit(project.unit)
    else:
        node = ctx.station() if kind == "overdue_task" and ctx.chance(0.5) else ctx.unit()
    record: Record = {
        "kind": kind,
        "subject": {"contract": _SUBJECT[kind], "id": ctx.ref(_SUBJECT[kind])},
        "node": node,
        "raised_at": timestamp(raised),
        "level": level,
        "message": message,
    }
    if ctx.chance(0.9):
        record["due"] = timestamp(due - due % DAY + 16 * HOUR - 1)  # 23:59:59.999 in China
    if raised < NOW - 30 * DAY and ctx.chance(0.6):
        record["cleared_at"] = timestamp(ctx.later(raised, DAY, 30 * DAY))
    return record
