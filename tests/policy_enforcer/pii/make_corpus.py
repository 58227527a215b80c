"""Generate the labelled PII corpus ``pii_corpus.jsonl`` (deterministic).

Run ``python tests/policy_enforcer/pii/make_corpus.py`` to rewrite the file;
the test suite checks that the committed file equals what this script builds,
so edit the script, never the JSONL.

Every sentence is written with inline markers, ``{{kind:value}}``, and the
script strips them and records the spans, so no offset is ever counted by
hand. Check characters (ID) and check digits (bank cards) are computed here
with their own implementation, independent of ``policy_enforcer.pii``.

Labelling conventions (the detector is measured against these):

* mobile spans include a ``+86``/``0086``/``(+86)`` prefix;
  landline spans include area-code parentheses and an extension;
* ``张先生`` is labelled on the surname only (``张``), the honorific stays;
* an 18-digit number with valid region and birth date but a wrong check
  character IS labelled ``id_card`` when 身份证/证件号 precedes it (a typo'd
  ID is still personal data) and is NOT labelled otherwise; a number with an
  impossible birth date is never an ID;
* a 16-19 digit number after 卡号/银行卡/账号 is a bank card even if it fails
  Luhn; without such a word only Luhn-valid card-like numbers are labelled;
* 400/800 service numbers, 12345/110/119/120/12315, order numbers, dates,
  amounts, rooms and buildings are never labelled.
"""

from __future__ import annotations

import json
import random
import re
from datetime import date, timedelta
from pathlib import Path

OUT = Path(__file__).parent / "pii_corpus.jsonl"
SEED = 12345

MARK = re.compile(r"\{\{(\w+):(.*?)\}\}")


def parse_marked(marked: str) -> dict:
    """Strip ``{{kind:value}}`` markers; return text and entity spans."""
    out: list[str] = []
    entities = []
    pos = 0
    length = 0
    for m in MARK.finditer(marked):
        before = marked[pos:m.start()]
        out.append(before)
        length += len(before)
        kind, value = m.group(1), m.group(2)
        entities.append({"kind": kind, "start": length, "end": length + len(value)})
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(marked[pos:])
    return {"text": "".join(out), "entities": entities}


def mk(kind: str, value: str) -> str:
    return "{{%s:%s}}" % (kind, value)


# ---------------------------------------------------------------- numbers ----
REGIONS = [
    "110105", "110101", "110108", "310104", "310115", "420106", "420102", "440305",
    "440106", "320102", "330106", "510107", "610113", "120101", "370202", "500103",
    "210102", "230103", "350203", "430104", "530102", "620102", "650102", "450103",
]
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def check_char(body: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS)) % 11]


def rand_birth(rng: random.Random, lo: int = 1940, hi: int = 2010) -> date:
    start = date(lo, 1, 1)
    return start + timedelta(days=rng.randrange((date(hi, 12, 31) - start).days))


def gen_id18(rng: random.Random) -> str:
    body = rng.choice(REGIONS) + rand_birth(rng).strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
    c = check_char(body)
    if c == "X" and rng.random() < 0.3:
        c = "x"
    return body + c


def gen_id18_bad_check(rng: random.Random) -> str:
    good = gen_id18(rng).upper()
    wrong = rng.choice([c for c in "0123456789X" if c != good[-1]])
    return good[:17] + wrong


def gen_id18_bad_date(rng: random.Random) -> str:
    body = rng.choice(REGIONS) + rng.choice(["19911301", "19850230", "20010431", "19790000", "19920632"])
    body += f"{rng.randrange(1000):03d}"
    return body + check_char(body)


def gen_id15(rng: random.Random) -> str:
    return rng.choice(REGIONS) + rand_birth(rng, 1935, 1985).strftime("%y%m%d") + f"{rng.randrange(1000):03d}"


MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151",
                   "152", "155", "157", "158", "159", "166", "170", "176", "177", "180", "181",
                   "182", "185", "186", "187", "188", "189", "191", "195", "198", "199"]


def gen_mobile(rng: random.Random) -> str:
    p = rng.choice(MOBILE_PREFIXES)
    a, b = f"{rng.randrange(10000):04d}", f"{rng.randrange(10000):04d}"
    form = rng.random()
    if form < 0.55:
        return p + a + b
    if form < 0.65:
        return f"{p} {a} {b}"
    if form < 0.75:
        return f"{p}-{a}-{b}"
    if form < 0.82:
        return f"+86 {p}{a}{b}"
    if form < 0.88:
        return f"+86{p}{a}{b}"
    if form < 0.92:
        return f"0086-{p}{a}{b}"
    if form < 0.95:
        return f"(+86){p}{a}{b}"
    return f"+86 {p} {a} {b}"


AREA_CODES = ["010", "021", "022", "023", "020", "027", "025", "028", "029", "024",
              "0755", "0571", "0512", "0532", "0731", "0371", "0591", "0871", "0451", "0351"]


def gen_landline(rng: random.Random) -> str:
    area = rng.choice(AREA_CODES)
    n = 8 if len(area) == 3 or rng.random() < 0.7 else 7
    local = str(rng.randrange(2, 9)) + "".join(str(rng.randrange(10)) for _ in range(n - 1))
    form = rng.random()
    if form < 0.55:
        s = f"{area}-{local}"
    elif form < 0.68:
        s = f"({area}){local}"
    elif form < 0.76:
        s = f"（{area}）{local}"
    elif form < 0.86:
        s = f"{area} {local}"
    else:
        s = f"{area}{local}"
    r = rng.random()
    if r < 0.1:
        s += f"转{rng.randrange(100, 9999)}"
    elif r < 0.16:
        s += f"-{rng.randrange(100, 9999)}"
    return s


def gen_local_landline(rng: random.Random) -> str:
    return str(rng.randrange(2, 9)) + "".join(str(rng.randrange(10)) for _ in range(7))


PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def gen_plate(rng: random.Random) -> str:
    p = rng.choice("京沪鄂粤苏浙川鲁津渝湘豫" if rng.random() < 0.7 else PROVINCES)
    city = rng.choice(PLATE_LETTERS[:12])
    sep = "·" if rng.random() < 0.2 else ""
    d = lambda k: "".join(str(rng.randrange(10)) for _ in range(k))  # noqa: E731
    form = rng.random()
    if form < 0.45:
        tail = d(5)
    elif form < 0.6:
        letter = rng.choice(PLATE_LETTERS)
        i = rng.randrange(5)
        tail = d(i) + letter + d(4 - i)
    elif form < 0.75:
        tail = rng.choice("DF") + rng.choice(PLATE_LETTERS + "0123456789") + d(4)
    elif form < 0.85:
        tail = d(5) + rng.choice("DF")
    else:
        tail = d(4) + rng.choice("警学挂领")
    return p + city + sep + tail


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch)
        if i % 2 == 0:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return str((10 - total % 10) % 10)


BINS = ["622202", "622848", "621700", "622588", "622700", "621226", "622262", "623668",
        "955880", "436742", "524094", "625966", "622908"]


def gen_bank(rng: random.Random, valid: bool = True, grouped: bool | None = None) -> str:
    length = rng.choice([16, 19, 19, 16, 17, 18])
    body = rng.choice(BINS)
    body += "".join(str(rng.randrange(10)) for _ in range(length - 1 - len(body)))
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randrange(1, 10)) % 10)
    num = body + check
    if grouped is None:
        grouped = rng.random() < 0.3
    if grouped:
        num = " ".join(num[i:i + 4] for i in range(0, len(num), 4))
    return num


def gen_email(rng: random.Random) -> str:
    user = rng.choice(["zhang", "li", "wang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou",
                       "xiaoming", "happy", "sunny", "tom", "lily", "jack", "cm", "hz", "wh"])
    user += rng.choice(["", "_", ".", ""]) + str(rng.randrange(1, 99999))
    if rng.random() < 0.3:
        user = gen_mobile_plain(rng)
    dom = rng.choice(["qq.com", "163.com", "126.com", "sina.com", "gmail.com", "foxmail.com",
                      "outlook.com", "139.com", "hotmail.com", "whu.edu.cn", "sohu.com"])
    return f"{user}@{dom}"


def gen_mobile_plain(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10 ** 8):08d}"


# Surnames for generation: a mix of very common and compound ones.
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁沈姚卢姜崔钟谭陆汪范金廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔汤温康施牛樊葛邢齐易乔伍庞颜倪庄聂章岳翟殷詹耿焦俞柳祝舒阮柯纪梅童凌毕裴霍涂苗谷盛翁冉骆辛靳管柴鲍喻祁蒲滕饶艾尤穆卓")
COMPOUND = ["欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "慕容", "司徒", "夏侯", "令狐"]
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛超霞刚桂英华玉兰秀红建志海辉鹏飞婷雪梅琳晨浩宇轩欣怡佳俊凯鑫斌波峰春燕慧颖琪萱涵博睿嘉瑶欢")


def gen_surname(rng: random.Random) -> str:
    return rng.choice(COMPOUND) if rng.random() < 0.06 else rng.choice(SURNAMES)


def gen_fullname(rng: random.Random) -> str:
    return gen_surname(rng) + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2, 2])))


def to_fullwidth_digits(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in s)


# ------------------------------------------------------------ negatives -----
def neg_order(rng: random.Random) -> str:
    return rng.choice([
        f"工单号{rng.randrange(2023, 2025)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}{rng.randrange(100000):05d}",
        f"订单号{rng.randrange(10 ** 17, 10 ** 18)}",
        f"订单编号{rng.randrange(10 ** 18, 10 ** 19)}",
        f"快递单号SF{rng.randrange(10 ** 11, 10 ** 12)}",
        f"运单号YT{rng.randrange(10 ** 12, 10 ** 13)}",
        f"交易单号4200001{rng.randrange(10 ** 20, 10 ** 21)}",
        f"发票号码{rng.randrange(10 ** 7, 10 ** 8)}",
        f"流水号{rng.randrange(10 ** 15, 10 ** 16)}",
        f"上次工单{rng.randrange(2023, 2025)}05{rng.randrange(10, 29)}00{rng.randrange(100, 999)}",
    ])


def neg_date(rng: random.Random) -> str:
    y, mo, d = rng.randrange(2022, 2025), rng.randrange(1, 13), rng.randrange(1, 29)
    return rng.choice([f"{y}年{mo}月{d}日", f"{y}{mo:02d}{d:02d}", f"{y}-{mo:02d}-{d:02d}",
                       f"{mo}月{d}日", f"{y}.{mo}.{d}", f"{y}/{mo:02d}/{d:02d}"])


def neg_time(rng: random.Random) -> str:
    h = rng.randrange(0, 24)
    return rng.choice([f"{h}点", f"晚上{rng.randrange(8, 12)}点", f"{h:02d}:{rng.randrange(60):02d}",
                       f"凌晨{rng.randrange(1, 5)}点半", f"早上{rng.randrange(5, 9)}点"])


def neg_amount(rng: random.Random) -> str:
    return rng.choice([f"{rng.randrange(100, 99999)}元", f"{rng.randrange(1, 50)}.{rng.randrange(10)}万元",
                       f"￥{rng.randrange(1, 99)},{rng.randrange(1000):03d}", f"{rng.randrange(1, 9)}万{rng.randrange(1, 9)}千元",
                       f"人民币{rng.randrange(1000, 200000)}元", f"{rng.randrange(10, 999)}块钱"])


def neg_addr(rng: random.Random) -> str:
    district = rng.choice(["朝阳区", "海淀区", "浦东新区", "武昌区", "江汉区", "洪山区", "南山区", "福田区",
                           "天河区", "西湖区", "锦江区", "雁塔区", "鼓楼区", "东城区", "徐汇区"])
    street = rng.choice(["建设路", "解放大道", "中山路", "人民路", "友谊大道", "和平街", "珞喻路",
                         "科技园南路", "光谷大道", "长江路", "幸福里", "文化路"])
    comm = rng.choice(["阳光花园", "金地名郡", "幸福家园", "翠湖小区", "锦绣江南", "东湖新村",
                       "万科城", "保利花园", "绿地世纪城", "碧桂园"])
    return rng.choice([
        f"{district}{street}{rng.randrange(1, 999)}号{comm}{rng.randrange(1, 30)}栋{rng.randrange(1, 6)}单元{rng.randrange(1, 33)}{rng.randrange(1, 5):02d}室",
        f"{comm}{rng.randrange(1, 20)}号楼{rng.randrange(1, 5)}单元{rng.randrange(101, 2804)}",
        f"{district}{street}与{rng.choice(['青年路', '新华路', '北京路'])}交叉口",
        f"{comm}{rng.choice('ABCD')}座{rng.randrange(1, 33)}{rng.randrange(1, 9):02d}",
        f"{street}{rng.randrange(1, 500)}号",
    ])


def neg_misc(rng: random.Random) -> str:
    return rng.choice([
        "12345热线", "拨打12345", "已经打过110", "拨打了119", "叫了120", "打12315投诉", "客服95588",
        f"客服电话400-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}",
        f"热线4008{rng.randrange(100000, 999999)}", f"800-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}",
        f"约{rng.randrange(50, 900)}米", f"{rng.randrange(1, 20)}公里", f"持续{rng.randrange(2, 12)}个月",
        f"第{rng.randrange(2, 6)}次反映", f"共{rng.randrange(10, 300)}户", f"{rng.randrange(20, 95)}分贝",
        f"{rng.randrange(2, 600)}路公交", f"室温{rng.randrange(10, 17)}度", f"{rng.randrange(1, 99)}%",
        f"工号{rng.randrange(1000, 99999)}", f"{rng.randrange(1960, 2024)}年",
        f"编号{rng.randrange(10 ** 9, 10 ** 10)}", f"{rng.randrange(100, 999)}平方米",
        f"号码{rng.choice(['12812345678', '1381234567', '138123456789', '02012345', '0101234567'])}",
        f"{rng.randrange(1, 12)}号线", f"G{rng.randrange(1, 99)}高速",
    ])


# -------------------------------------------------------------- templates ---
def name_intro(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.45:
        return rng.choice(["市民来电反映，", "来电人反映：", "市民称，", "来电反映，", "群众反映，",
                           "我是本小区业主，", "我是车主，", "我是附近居民，", "本人是租户，", ""])
    full = gen_fullname(rng)
    sur = gen_surname(rng)
    return rng.choice([
        f"我叫{mk('name', full)}，", f"我是{mk('name', full)}，", f"本人{mk('name', full)}，",
        f"姓名：{mk('name', full)}，", f"联系人：{mk('name', full)}，", f"来电人{mk('name', full)}反映，",
        f"{mk('name', sur)}先生来电反映，", f"{mk('name', sur)}女士来电称，", f"市民{mk('name', sur)}女士反映，",
        f"投诉人：{mk('name', full)}，", f"我叫{mk('name', full)}，是{neg_addr(rng)}的住户，",
    ])


def contact(rng: random.Random, fw: bool) -> str:
    """A contact clause; ``fw`` renders the digits full-width."""
    f = to_fullwidth_digits if fw else (lambda s: s)
    r = rng.random()
    options = [
        lambda: f"联系电话：{mk('mobile', f(gen_mobile(rng)))}",
        lambda: f"手机{mk('mobile', f(gen_mobile(rng)))}",
        lambda: f"请回电{mk('mobile', f(gen_mobile(rng)))}",
        lambda: f"电话{mk('landline', f(gen_landline(rng)))}",
        lambda: f"联系方式{mk('landline', f(gen_landline(rng)))}",
        lambda: f"座机{mk('landline', f(gen_local_landline(rng)))}",
        lambda: f"手机{mk('mobile', f(gen_mobile(rng)))}或座机{mk('landline', f(gen_landline(rng)))}",
        lambda: f"身份证号{mk('id_card', f(gen_id18(rng)))}",
        lambda: f"身份证号码：{mk('id_card', f(gen_id18(rng)))}，电话{mk('mobile', f(gen_mobile(rng)))}",
        # IDs without an ID keyword, so recall depends on the check character.
        lambda: f"登记信息{mk('id_card', f(gen_id18(rng)))}/{mk('mobile', f(gen_mobile(rng)))}",
        lambda: f"核验号码{mk('id_card', f(gen_id18(rng)))}",
        lambda: f"报名时填的是{mk('id_card', f(gen_id18(rng)))}",
        lambda: f"{mk('name', gen_fullname(rng))}先生（{mk('id_card', f(gen_id18(rng)))}）",
        lambda: f"邮箱{mk('email', gen_email(rng))}",
        lambda: f"回复请发邮件至{mk('email', gen_email(rng))}",
        lambda: f"工资卡号{mk('bank_card', gen_bank(rng))}",
    ]
    if r < 0.12:
        return ""
    return rng.choice(options)()


TOPICS = [
    "{addr}楼下的KTV每天{time}后仍然很吵，{misc}，严重影响休息",
    "{addr}隔壁装修从{time}开始电钻声不断，{date}至今未停",
    "{addr}附近有商贩占道经营，{time}到{time2}堵塞交通，{misc}",
    "{addr}小区物业费涨到每年{amount}，电梯坏了{n}天没人修",
    "车牌{plate}的车辆长期停在{addr}消防通道，{misc}",
    "{addr}有辆{plate}违章停车堵住出口，{time}至今未挪",
    "{addr}室内温度只有{n}度，供暖不达标，{misc}",
    "{addr}暖气不热，{date}报修至今，物业说{misc}",
    "{company}拖欠{n}名工人工资共计{amount}，{date}前承诺支付未兑现",
    "在{company}工作期间被拖欠工资{amount}，{order}",
    "有人每天{time}在{addr}上空放无人机，高度约{n}0米，{misc}",
    "{addr}附近{time}有无人机盘旋拍摄住户窗户",
    "网购商品未收到，{order}，商家拒绝退款{amount}",
    "在{company}办卡充值{amount}，{date}门店关门，{order}",
    "{addr}垃圾清运不及时，{misc}，气味很大",
    "{addr}楼上漏水{n}天，{misc}，物业不处理",
    "乘坐{misc}时司机拒载，车牌{plate}，时间{date}{time}",
    "出租车{plate}绕路多收{amount}，{date}{time}上车",
    "{addr}共享单车乱停放，{misc}",
    "{addr}燃气管道有异味，{date}{time}已报修，{misc}",
    "{addr}工地夜间施工到{time}，噪音{misc}",
    "医保报销{amount}至今未到账，{date}提交材料，{order}",
    "孩子在{company}培训，缴费{amount}后机构跑路，{misc}",
    "{addr}违建占用公共绿地，{misc}，{date}已反映过",
    "{addr}餐馆油烟直排，{misc}",
    "{addr}路灯损坏{n}天，{misc}",
    "{addr}小区门口{plate}长期占用盲道，{time}仍在",
    "{company}未按合同退还押金{amount}，{order}",
]

COMPANIES = ["某建筑劳务公司", "城建三公司", "鑫达装饰", "某物业公司", "快乐成长教育", "美家健身",
             "顺通物流", "某餐饮店", "华宇房地产", "众鑫汽修厂"]


def gen_sentence(rng: random.Random) -> str:
    topic = rng.choice(TOPICS)
    body = topic.format(
        addr=neg_addr(rng), time=neg_time(rng), time2=neg_time(rng), misc=neg_misc(rng),
        date=neg_date(rng), amount=neg_amount(rng), n=rng.randrange(2, 40),
        company=rng.choice(COMPANIES), order=neg_order(rng), plate=mk("plate", gen_plate(rng)),
    )
    fw = rng.random() < 0.08
    c = contact(rng, fw)
    tail = rng.choice(["，请尽快处理。", "，希望相关部门处理。", "。", "，要求回复。", "，诉求：尽快解决。"])
    parts = [name_intro(rng), body]
    if c:
        parts.append("，" + c)
    return "".join(parts) + tail


def gen_hard_negative(rng: random.Random) -> str:
    """Sentences built to trip a sloppy detector; only the marked bits are PII."""
    k = rng.randrange(10)
    if k == 0:
        return f"对方提供的号码{gen_id18_bad_check(rng)}核实无此人，{neg_order(rng)}。"
    if k == 1:
        return f"身份证号{gen_id18_bad_date(rng)}，系统提示出生日期有误，{neg_date(rng)}再次核对。"
    if k == 2:
        return f"身份证{mk('id_card', gen_id18_bad_check(rng))}（来电人称可能记错一位），请核实。"
    if k == 3:
        return f"{neg_order(rng)}，{neg_amount(rng)}，{neg_date(rng)}{neg_time(rng)}下单，{neg_misc(rng)}。"
    if k == 4:
        return f"银行卡号{mk('bank_card', gen_bank(rng, valid=False))}转账失败，{neg_amount(rng)}。"
    if k == 5:
        digits = gen_bank(rng, valid=False, grouped=False)
        return f"{neg_addr(rng)}，会员码{digits}，{neg_misc(rng)}。"
    if k == 6:
        return f"{neg_addr(rng)}{neg_misc(rng)}，{neg_misc(rng)}，{neg_date(rng)}。"
    if k == 7:
        return f"老身份证号{mk('id_card', gen_id15(rng))}，已过期未换领。"
    if k == 8:
        return f"{neg_misc(rng)}，{neg_time(rng)}，{neg_addr(rng)}，{neg_amount(rng)}。"
    return f"转账至账号{mk('bank_card', gen_bank(rng))}，{neg_order(rng)}。"


# Hand-written sentences, close to real work-order wording.
HAND_WRITTEN = [
    "我叫{{name:李秀英}}，住在翠湖小区3栋2单元1502室，楼上每天晚上11点后还在跳绳，已经打过12345三次了，电话{{mobile:13907181234}}。",
    "来电人{{name:王建国}}反映：2024年5月1日在美家健身办卡3500元，现门店关门，要求退费，联系电话{{mobile:186 2711 0098}}。",
    "本人{{name:欧阳娜娜}}，身份证号{{id_card:11010519491231002X}}，申请低保复核，材料已于20240501提交。",
    "{{name:张}}先生来电称，{{plate:鄂A·D12345}}新能源车被人堵在车库出口，物业电话打不通。",
    "武昌区中山路318号工地凌晨2点还在打桩，噪音超过80分贝，来电人要求回电{{mobile:+86 138 0027 5566}}。",
    "联系人：{{name:陈思琪}}，座机{{landline:(027)87654321}}，邮箱{{email:chensq2019@163.com}}。",
    "某劳务公司拖欠32名工人工资共计46万元，包工头{{name:刘}}师傅电话{{mobile:159-2734-8812}}一直关机。",
    "有人在东湖新村上空放无人机，每天下午5点左右，高度约100米，拍到住户窗户，已报110。",
    "违章停车：{{plate:粤B88K21}}长期停在消防通道，车主联系方式未知，请城管处理。",
    "快递单号SF1403986688123显示已签收，本人未收到，客服400-811-1111无人接听。",
    "姓名：{{name:赵磊}}  手机：{{mobile:１３６１２３４５６７８}}  诉求：小区电梯3号梯停运7天。",
    "{{name:孙}}女士反映其母亲（老身份证{{id_card:420106520314123}}）医保卡无法使用，请社保局核实。",
    "工资卡号{{bank_card:6222 0212 3456 7890 128}}，公司说已发放但一直没到账，金额8600元。",
    "我是{{name:周杰}}，订单号202405120012345678，网购冰箱漏水，商家拒绝退货。",
    "供暖公司热线96390打不通，碧桂园12号楼2单元室温只有14度，联系{{landline:0571-87651234}}。",
    "市民反映：幸福家园2栋门口每天早上6点有商贩占道卖菜，约20个摊位，堵塞交通。",
    "举报人{{name:吴}}先生称{{plate:京N12345}}、{{plate:京A1234警}}两车在小区内逆行。",
    "投诉人：{{name:司马光辉}}，邮箱{{email:smgh@whu.edu.cn}}，反映学校周边网吧接纳未成年人。",
    "来电称2023年12月至今被拖欠工资12800元，工号80231，要求劳动监察介入，电话{{landline:010-62751234转8001}}。",
    "请回电{{mobile:0086-15927345678}}，或发邮件到{{email:15927345678@139.com}}。",
    "我的银行卡{{bank_card:6217000010012345670}}被冻结，支行电话95533说需要本人到场。",
    "身份证{{id_card:44011320141005001x}}是我孩子的，学位申请系统显示信息错误。",
    "{{name:黄}}阿姨反映楼下餐馆油烟直排，炉灶距离窗户不到3米，已持续半年。",
    "外卖员车牌{{plate:沪A12345F}}的电动货车在人行道上高速行驶，2024-05-12 18:30差点撞到老人。",
    "车牌号{{plate:川A·F12889}}的网约车绕路，多收车费56元，行程单编号4401120240512001。",
    "姓名：{{name:东方明慧}}，联系电话：{{mobile:13812345678}}，地址：浦东新区世纪大道100号。",
    "小区物业擅自将公共绿地改建停车位，涉及3栋、5栋、7栋共计216户，业主代表{{name:马}}先生。",
    "本人{{name:郑晓峰}}，{{id_card:412723199010050012}}，反映户口迁移办理进度。",
    "建设路与青年路交叉口红绿灯坏了2天，早高峰7:30-9:00很堵。",
    "账号{{bank_card:6228480402564890018}}收到不明转账5000元，怀疑诈骗，已报警110。",
    "我叫{{name:上官婉}}，是锦绣江南的租户，房东扣押押金3000元不退。",
    "座机{{landline:85761234}}一直打不通，请热线帮忙转告社区。",
    "我爸的身份证号{{id_card:36042619910102009X}}登记错了一位，正确的是{{id_card:360426199101010071}}。",
    "他说身份证号是360426199113010079，但13月不存在，系统无法登记。",
    "来电人{{name:钱}}先生要求撤回工单2024051200123，问题已解决。",
    "联系人{{name:冯雪梅}}电话{{landline:(0755)86001234-321}}，深圳南山区科技园南路15号。",
    "市民称无人机在金地名郡上空夜间11点多盘旋，声音约60分贝，怀疑偷拍，请公安处理。",
    "车辆{{plate:浙A3B5C7}}和{{plate:浙AD77889}}长期占用充电车位但不充电。",
    "退休职工{{name:诸葛亮平}}反映养老金4月少发了1200元，身份证号{{id_card:110102199101010078}}。",
    "我是附近居民，晚上10点以后广场舞音响仍很大声，约50人，地点是和平街18号。",
    "我是车主，车被刮了，对方车牌{{plate:苏E·12345}}，事故时间2024年5月3日下午3点。",
    "房号1502、1503两户之间的墙体开裂，开发商客服800-820-5555称不属于保修。",
    "请{{name:王}}经理尽快联系我们，{{mobile:13500001111}}，邮箱{{email:wh_yezhu@qq.com}}。",
    "燃气公司电话96777一直占线，阳光花园5号楼1单元1801燃气表不走字。",
    "{{name:杨}}大爷反映门前路灯坏了半个月，地址人民路256号，老人晚上出行不便。",
    "联系人:{{name:曾志强}} 电话:{{landline:027-8765 4321}}",
    "我是高三学生家长，学校周末强制补课，班主任老师说是自愿的，收费2400元。",
    "小区保安师傅态度恶劣，门卫大爷也不管，外来车辆随便进出。",
    "我是外卖员，经常被物业经理拦在门外，保洁阿姨也说不让进，工号31207。",
    "我是孙子，替爷爷打电话，他住在东湖新村8栋302，暖气一直不热。",
    "我是常住人口，孩子入学被要求提供2019年至今的社保缴费证明。",
    "周末老师不在学校，语文老师让家长自己辅导，请教育局核查。",
    "房租2000元/月，押一付三，房东收了8000元后失联，合同编号HT20240312。",
    "停电从10:00-22:00，共12小时，供电公司95598说是检修。",
]


def build() -> list[dict]:
    rng = random.Random(SEED)
    marked = list(HAND_WRITTEN)
    marked += [gen_sentence(rng) for _ in range(700)]
    marked += [gen_hard_negative(rng) for _ in range(260)]
    return [parse_marked(s) for s in marked]


def render(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


if __name__ == "__main__":
    OUT.write_text(render(build()), encoding="utf-8")
    print(f"wrote {OUT}")
