"""Stations, deputies and what deputies do there: receptions and duty activities."""

from __future__ import annotations

from contracts.samples._base import (
    AREA_CODE,
    CITY,
    COUNTY,
    COUNTY_CODE,
    NUMERALS,
    PROVINCE,
    TOWNS,
    VILLAGES,
    Context,
    Record,
    Weighted,
    date_at,
    days_from_epoch,
    town_code,
)

# --- station ----------------------------------------------------------------------------------

_HUBS = {  # depth of a hub id -> (level, name, region code)
    1: ("province", f"{PROVINCE}人民代表大会常务委员会", "320000"),
    2: ("city", f"{CITY}人民代表大会常务委员会", "320200"),
    3: ("county", f"{COUNTY}人民代表大会常务委员会", COUNTY_CODE),
}
_ROOMS = {  # village-level station types and their name suffixes
    "work_station": "代表工作站",
    "studio": "代表工作室",
    "contact_point": "代表联系点",
    "home": "代表之家",
}
_ROOM_TYPE = Weighted([("studio", 40), ("work_station", 25), ("contact_point", 25), ("home", 10)])
_STATION_STATUS = Weighted([("active", 92), ("suspended", 5), ("closed", 3)])
_HOURS = (
    "每月{d}日上午9:00-11:30，代表轮值接待",
    "每周{w}上午9:00-11:30",
    "工作日8:30-17:30，每月{d}日为代表集中接待日",
    "每月第一个周{w}全天",
)
_WEEKDAYS = ("一", "二", "三", "四", "五")
_FLOORS = ("党群服务中心二楼", "村（居）委会一楼", "便民服务中心三楼", "新时代文明实践站旁")


def station(ctx: Context) -> Record:
    """Record 0 is the origin itself; then the stations of the origin's county, one node each."""
    node, number = _station_node(ctx)
    if node == ctx.origin and not ctx.at_station:
        level, name, region = _HUBS[min(len(ctx.origin.split(".")), 3)]
        record: Record = {"node": node, "name": name, "level": level, "station_type": "office"}
        address, deputies = f"{PROVINCE}{CITY}{COUNTY}{ctx.pick(_FLOORS)}", ctx.between(300, 800)
    else:
        town = TOWNS[(number - 1) % len(TOWNS)]
        record = {"node": node, "level": "station"}
        if number <= len(TOWNS):  # one liaison station per township, then village rooms
            record["name"] = f"{COUNTY}{town}代表联络站"
            record["station_type"] = "liaison_station"
            region, place, deputies = (
                COUNTY_CODE + town_code(town) + "000",
                town,
                ctx.between(15, 60),
            )
        else:
            village = ctx.pick(VILLAGES)
            kind = _ROOM_TYPE(ctx.rng)
            record["name"] = f"{COUNTY}{town}{village}{_ROOMS[kind]}"
            record["station_type"] = kind
            village_code = ctx.between(1, 30) + (0 if village.endswith("社区") else 200)
            region = f"{COUNTY_CODE}{town_code(town)}{village_code:03d}"
            place, deputies = town + village, ctx.between(3, 15)
        address = f"{PROVINCE}{CITY}{COUNTY}{place}{ctx.pick(_FLOORS)}"
    record["address"] = address
    record["region_code"] = region
    record["status"] = _STATION_STATUS(ctx.rng)
    if ctx.chance(0.9):
        record["opened_on"] = date_at(ctx.between(days_from_epoch(2017, 3, 1), -30))
    record["deputies_count"] = deputies
    if ctx.chance(0.8):
        record["demonstration"] = ctx.chance(0.15)
    if ctx.chance(0.85):
        record["phone"] = f"{AREA_CODE}-86{ctx.between(100000, 999999)}"
    if ctx.chance(0.8):
        hours = ctx.pick(_HOURS)
        record["opening_hours"] = hours.format(d=ctx.between(1, 28), w=ctx.pick(_WEEKDAYS))
    if ctx.chance(0.7):
        record["introduction"] = (
            f"{record['name']}联系各级人大代表{deputies}名，设“民意直通车”扫码反映问题渠道，"
            "实行代表轮值接待、问题登记交办、办理结果回访的闭环工作机制。"
        )
    return record


def _station_node(ctx: Context) -> tuple[str, int]:
    """The node id of station record ``ctx.index`` and its number under the hub."""
    own = ctx.origin.removeprefix(ctx.hub + ".s")
    own_number = int(own) if own.isdigit() else None
    if ctx.index == 0:
        return ctx.origin, own_number or 1
    number = ctx.index
    if own_number is not None and number >= own_number:
        number += 1  # skip the origin's own number
    return f"{ctx.hub}.s{number:03d}", number


# --- deputy -----------------------------------------------------------------------------------

_LEVEL = Weighted(
    [("township", 45), ("county", 30), ("city", 14), ("province", 8), ("national", 3)]
)
_TERMS = {  # level -> (term number, first day, last day)
    "national": (14, (2023, 3, 5), (2028, 3, 4)),
    "province": (14, (2023, 1, 13), (2028, 1, 12)),
    "city": (17, (2022, 1, 6), (2027, 1, 5)),
    "county": (18, (2021, 12, 20), (2026, 12, 19)),
    "township": (19, (2021, 12, 15), (2026, 12, 14)),
}
_PARTY = Weighted(
    [
        ("cpc", 70), ("masses", 12), ("non_party", 8), ("cndca", 2), ("capd", 2), ("cdl", 2),
        ("jsps", 2), ("pwdp", 1), ("rcck", 1),
    ]
)  # fmt: skip
_COMPANIES = ("长江纺织", "澄南机械", "华盛新材料", "江南电缆", "顺达物流", "申港精工", "澄星化工")
_JOBS = (
    "{town}{village}党委书记",
    "{town}{village}村民委员会主任",
    "江苏{company}有限公司董事长",
    "江苏{company}有限公司一线职工",
    "江阴市人民医院主任医师",
    "{town}中心小学教师",
    "{town}{village}农民",
    "{town}{village}社区网格员",
    "个体工商户",
    "{town}人大主席",
)


def deputy(ctx: Context) -> Record:
    name, gender = ctx.person()
    level = _LEVEL(ctx.rng)
    term, start, end = _TERMS[level]
    town = ctx.town()
    record: Record = {"name": name, "level": level, "constituency": _constituency(ctx, level, town)}
    if ctx.chance(0.9):
        record["home_station"] = ctx.station()
    record["term_number"] = term
    record["term_start"] = date_at(days_from_epoch(*start))
    if ctx.chance(0.85):
        record["term_end"] = date_at(days_from_epoch(*end))
    if ctx.chance(0.9):
        record["status"] = "terminated" if ctx.chance(0.03) else "serving"
    if ctx.chance(0.95):
        record["gender"] = gender
    if ctx.chance(0.85):
        record["party"] = _PARTY(ctx.rng)
    if ctx.chance(0.9):
        job = ctx.pick(_JOBS)
        record["occupation"] = job.format(
            town=town, village=ctx.pick(VILLAGES), company=ctx.pick(_COMPANIES)
        )
    if ctx.chance(0.8):
        record["phone"] = ctx.mobile()
    return record


def _constituency(ctx: Context, level: str, town: str) -> str:
    if level == "township":
        return f"{town}第{ctx.pick(NUMERALS[:12])}选区"
    if level == "county":
        return f"{COUNTY}第{ctx.pick(NUMERALS)}选区"
    return {"city": f"{COUNTY}代表团", "province": f"{CITY}代表团"}.get(level, "江苏省代表团")


# --- reception --------------------------------------------------------------------------------

_THEMES = (
    "我请代表捎句话",
    "民生实事项目征集",
    "优化营商环境",
    "老旧小区改造",
    "养老服务",
    "乡村振兴",
    "平安建设",
)


def reception(ctx: Context) -> Record:
    visitors = ctx.between(2, 12) + ctx.between(0, 3) * ctx.between(0, 15)
    issues = min(visitors, ctx.between(0, 6) + ctx.between(0, 6))
    deputies = ctx.refs("deputy", ctx.between(1, 4))
    record: Record = {"date": date_at(ctx.between(0, 299))}
    if ctx.chance(0.8):
        record["station"] = ctx.station()
    if ctx.chance(0.5):
        record["theme"] = ctx.pick(_THEMES)
    record["deputy_ids"] = deputies
    record["visitor_count"] = visitors
    record["issues_collected"] = issues
    if issues and ctx.chance(0.6):
        record["opinion_ids"] = ctx.refs("opinion", ctx.between(1, min(issues, 8)))
    if ctx.chance(0.6):
        answered = ctx.between(0, issues)
        record["notes"] = (
            f"当值代表{len(deputies)}名，接待群众{visitors}人次，收集问题{issues}件，"
            f"现场答复{answered}件，其余已登记交办。"
        )
    return record


# --- duty activity ----------------------------------------------------------------------------

_KIND = Weighted(
    [
        ("station_visit", 20), ("voter_reception", 18), ("study", 12), ("meeting", 10),
        ("inspection", 8), ("survey", 8), ("opinion_handled", 8), ("suggestion_submitted", 6),
        ("speech", 5), ("training", 4), ("other", 1),
    ]
)  # fmt: skip
_HEARD = "听取群众意见建议{k}条，已按程序登记，需要交办的问题已提交平台交办并跟踪办理结果。"
_ACTIVITY = {  # kind -> (minutes low, high, titles)
    "station_visit": (60, 240, ("{month}月份代表进站接待日", "代表月进站履职活动")),
    "voter_reception": (60, 180, ("“我请代表捎句话”主题接待", "{month}月份选民接待日")),
    "study": (30, 120, ("云上学习：代表法解读", "学习全过程人民民主重要论述")),
    "meeting": (120, 480, ("出席{county}人大常委会第{n}次会议", "列席{town}人代会")),
    "inspection": (120, 480, ("视察{town}民生实事项目推进情况", "参加食品安全法执法检查")),
    "survey": (120, 480, ("关于农村养老服务的专题调研", "关于营商环境的专题调研")),
    "opinion_handled": (30, 240, ("协调处理群众反映的问题", "回访反映人并通报办理结果")),
    "suggestion_submitted": (30, 120, ("提出关于加强农村危桥改造的建议", "领衔提出议案一件")),
    "speech": (5, 30, ("在常委会会议上审议发言", "在代表小组活动中发言")),
    "training": (180, 960, ("参加新任代表履职培训班", "参加代表履职能力提升培训")),
    "other": (30, 240, ("参加代表小组活动", "参加志愿服务活动")),
}  # fmt: skip
_DESCRIPTIONS = {
    "station_visit": _HEARD,
    "voter_reception": _HEARD,
    "study": "完成线上学习课程{k}节。",
    "meeting": "全程参加会议，审议各项报告。",
    "inspection": "实地查看点位{k}处，提出意见建议。",
    "survey": "走访{k}个村（社区），形成调研报告。",
    "opinion_handled": "现场查看并协调承办单位，问题已交办。",
    "suggestion_submitted": "经调研后提出，{k}名代表附议。",
    "speech": "围绕民生实事项目推进情况发言。",
    "training": "参加集中培训，完成结业考核。",
    "other": "参加活动，听取群众意见建议{k}条。",
}
_EVIDENCE = ("签到表", "活动照片1", "活动照片2", "会议记录")


def duty_activity(ctx: Context) -> Record:
    kind = _KIND(ctx.rng)
    low, high, titles = _ACTIVITY[kind]
    day = date_at(ctx.between(0, 299))
    record: Record = {"deputy_id": ctx.ref("deputy"), "kind": kind, "date": day}
    if ctx.chance(0.85):
        record["duration_minutes"] = ctx.between(low // 5, high // 5) * 5
    if kind in ("station_visit", "voter_reception") or ctx.chance(0.3):
        record["station"] = ctx.station()
    if ctx.chance(0.9):
        title = ctx.pick(titles)
        record["title"] = title.format(
            month=int(day[5:7]), county=COUNTY, town=ctx.town(), n=ctx.between(20, 35)
        )
    if ctx.chance(0.6):
        record["description"] = _DESCRIPTIONS[kind].format(k=ctx.between(2, 12))
    if kind == "opinion_handled":
        record["opinion_id"] = ctx.ref("opinion")
    elif kind == "suggestion_submitted":
        record["suggestion_id"] = ctx.ref("suggestion")
    if ctx.chance(0.3):
        record["evidence"] = ctx.files(_EVIDENCE, 3)
    return record
