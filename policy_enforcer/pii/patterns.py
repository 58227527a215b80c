"""Compiled regular expressions, built once at import.

All patterns run on *normalised* text (see ``normalize``), so they only need
ASCII digits and letters, ``-``, ``+`` and ``@``; colons and parentheses
may be either width (normalisation leaves CJK punctuation alone). Digit classes are written ``[0-9]``
rather than ``\\d`` because ``\\d`` on ``str`` also matches Arabic-Indic and
other Unicode digits the validators would then choke on.

Every numeric pattern is fenced with ``(?<![0-9])`` / ``(?![0-9])`` so that a
phone number is never found inside a longer number (order numbers, card
numbers, IDs) — that single rule removes most false positives.
"""

from __future__ import annotations

import re

from .surnames import COMPOUND_SURNAMES, SINGLE_SURNAMES

# --- resident ID --------------------------------------------------------------
# 18 characters, optionally written 6-8-4 with single spaces; or 15 digits.
ID18 = re.compile(r"(?<![0-9])[1-9][0-9]{5} ?[0-9]{8} ?[0-9]{3}[0-9Xx](?![0-9A-Za-z])")
ID15 = re.compile(r"(?<![0-9])[1-9][0-9]{14}(?![0-9A-Za-z])")

# --- phones -------------------------------------------------------------------
# Mobile: 1[3-9]x, 3-4-4 with optional single space/dash, optional +86/0086.
MOBILE = re.compile(
    r"(?<![0-9])(?:(?:\+|00)86[ -]?|[(（]\+?86[)）] ?)?"
    r"1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"
)

# Landline: real area-code shapes only (010, 02x, 0[3-9]xx), a local number
# that starts 2-9 (0/1 never start a local number), run together or split
# 3-4/4-4, then an optional extension.
_AREA = r"0(?:10|2[0-9]|[3-9][0-9]{2})"
_EXT = r"(?:(?:-|转|分机|ext\.?|EXT\.?|Ext\.?) ?[0-9]{1,6}(?![0-9]))?"
LANDLINE = re.compile(
    rf"(?<![0-9])(?:[(（]{_AREA}[)）] ?|{_AREA}[ -]?)(?:[2-9][0-9]{{6,7}}|[2-9][0-9]{{2,3}}[ -][0-9]{{4}})"
    rf"(?![0-9]){_EXT}"
)
# A local number without area code is only a phone when the word says so.
LANDLINE_LOCAL = re.compile(
    r"(?:座机|固话|固定电话|办公电话|家里电话|家庭电话)(?:号码)?(?:是|为)?[:：]? ?"
    r"([2-8][0-9]{6,7})(?![0-9])"
)

# Nationwide service numbers (400/800 free-phone) are companies, not people;
# they are matched first and block everything they cover.
SERVICE = re.compile(r"(?<![0-9])[48]00[ -]?[0-9]{3}[ -]?[0-9]{4}(?![0-9])")

# --- payment card -------------------------------------------------------------
# 13-19 digits run together, groups of four (last group 1-3 digits), or the
# 4-6-5 / 4-6-4 grouping of Amex and Diners. A trailing letter means something
# else (the first 17 digits of an ID ending in X); a leading '+' a phone number.
BANK_CARD = re.compile(
    r"(?<![0-9+])(?:[0-9]{13,19}|[0-9]{4}(?:[ -][0-9]{4}){3}(?:[ -][0-9]{1,3})?"
    r"|[0-9]{4}[ -][0-9]{6}[ -][0-9]{4,5})(?![0-9A-Za-z])"
)

# --- IBAN ---------------------------------------------------------------------
# Country, check digits, then up to 30 letters/digits, optionally in groups.
# Greedy: it may swallow a following capitalised word, which the detector
# trims off group by group until the ISO 13616 check passes.
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")

# --- other identity documents -------------------------------------------------
# Hong Kong identity card: 1-2 letters, 6 digits, check digit (often bracketed).
HKID = re.compile(r"(?<![A-Za-z0-9])[A-Z]{1,2}[0-9]{6}(?:\([0-9A]\)|[0-9A])(?![A-Za-z0-9])")
# Macao-style "1234567(8)": a bracketed check digit; reported only after an ID word.
ID_BRACKETED = re.compile(r"(?<![A-Za-z0-9])[0-9]{7}\([0-9]\)")
# US social security number, always written 3-2-4 with dashes.
SSN = re.compile(r"(?<![0-9-])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9-])")
# Passports and travel permits have no public check digit: only the number
# right after the document's name counts.
TRAVEL_DOC = re.compile(
    r"(?:护照|通行证|台胞证|回乡证|旅行证|(?i:passport))"
    r"(?:号码|号|编号|(?i: ?(?:no\.?|number|#)))? ?(?:(?i:is)|是|为)? ?[:：]? ?"
    r"(?P<doc>[A-Za-z]{0,2}[0-9]{7,9})(?![0-9A-Za-z])"
)

# --- e-mail -------------------------------------------------------------------
# Local part bounded to 64 chars so a long alnum run cannot make the scan
# quadratic; the detector also skips this regex when there is no '@'.
EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9])"
)

# --- licence plate ------------------------------------------------------------
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_L = "A-HJ-NP-Za-hj-np-z"  # plates never use I or O
_SEP = "[·•・ -]?"
PLATE = re.compile(
    rf"[{PROVINCES}][·•・]?[{_L}]{_SEP}(?:"
    rf"[DFdf][{_L}0-9][0-9]{{4}}"  # new energy, small: D/F in position 3
    rf"|[0-9]{{5}}[DFdf]"  # new energy, large: D/F in position 8
    rf"|[{_L}0-9]{{4}}[警学挂领使港澳试超]"  # police, coach, trailer, consulate, HK/Macao...
    rf"|[{_L}0-9]{{5}}"  # ordinary blue/yellow plate
    rf")(?![A-Za-z0-9])"
)
# Other countries' plates have no common shape, so only the registration
# right after a plate word counts ("New York plates HJK-4821", "UK
# registration LB07 SEO"); the detector wants a letter and a digit in it.
PLATE_LATIN = re.compile(
    r"(?i:\b(?:licen[cs]e )?plates?|\bregistration|\breg\.?|\btag)(?i: (?:number|no\.?|#))?(?i: is)? ?[:#]? ?"
    r"(?P<plate>[A-Z0-9]{1,4}(?:[ -]?[A-Z0-9]{1,5})?)(?![A-Za-z0-9])"
)

# --- context keywords (looked for just before a number) -----------------------
# Groups: CTX_ID, CTX_BANK, CTX_ORDER (order/reference words: the number is
# not personal) and CTX_PHONE. English words match in any case.
CTX_ID, CTX_BANK, CTX_ORDER, CTX_PHONE = 1, 2, 3, 4
# Matched on the lower-cased window before a number (an inline (?i) group
# made this pattern the detector's slowest).
CONTEXT = re.compile(
    r"(身份证|证件号|身份号码|公民身份|(?<![a-z])(?:ssn|social security|hkid|identity card|id card|id number))"
    r"|(银行卡|卡号|账号|帐号|储蓄卡|信用卡|借记卡|工资卡|银行账户|收款账户|开户"
    r"|(?<![a-z])(?:card|visa|mastercard|amex|discover|jcb|unionpay|diners))"
    r"|(订单|单号|工单|编号|流水号|运单|交易号|批次|发票|快递|条码|序列号|工号"
    r"|(?<![a-z])(?:order|ticket|case|tracking|confirmation|reference|ref\b|invoice|receipt|citation"
    r"|permit|serial|application|transaction|report))"
    r"|(电话|手机|座机|致电|回电|来电"
    r"|(?<![a-z])(?:call|phone|tel\b|mobile|cell\b|text|reach|ring\b|fax|whatsapp|wechat))"
)
CONTEXT_WINDOW = 24  # characters before the number

# --- names --------------------------------------------------------------------
_COMPOUND = "|".join(sorted(COMPOUND_SURNAMES, key=len, reverse=True))
SURNAME = rf"(?:{_COMPOUND}|[{SINGLE_SURNAMES}])"
_CJK = "\u4e00-\u9fff"

# "我叫X / 我是X / 本人X / 姓名:X / 联系人:X ..." - X = surname + 1-2 chars;
# the detector trims the given name when the next char starts a new word.
NAME_TRIGGER = re.compile(
    r"(?:我叫|我是|本人|姓名|联系人|来电人|投诉人|反映人|诉求人|举报人|当事人|户主)"
    rf"(?:是|为)?[:：]? ?(?P<sur>{SURNAME})(?P<given>[{_CJK}]{{1,2}})"
)
_HONORIFIC = "先生|女士|小姐|师傅|阿姨|大爷|大妈|老师|经理|主任"
# Honorifics that follow a bare surname only ("贾警官", "李奶奶").
_SURNAME_HONORIFIC = "警官|医生|律师|科长|处长|局长|所长|书记|队长|老板|大姐|大哥|叔叔|奶奶|爷爷|护士|同学"
# Honorifics are found by literal search and the surname is looked up just
# before them (names.py) - much faster than trying a surname class at every
# position. FULL_NAME_HONORIFICS are the ones unambiguous enough to also take
# a given name ("，王小明先生"); "周末老师" must not become a name.
HONORIFIC = re.compile(f"{_HONORIFIC}|{_SURNAME_HONORIFIC}")
FULL_NAME_HONORIFICS = frozenset({"先生", "女士", "小姐"})

# Role and relation words after which a surname starts a name anywhere in a
# sentence ("邻居王海涛把…", "老板林永福一直…", "——钱思远"). The given name must
# be made of common given-name characters (name_chars.py), which is what keeps
# "老板周末…" and "师傅马上…" out.
_ROLE_WORDS = (
    "邻居|房东|房主|租客|房客|租户|业主|住户|车主|老板娘|老板|店主|店长|摊主|经理|主任|队长|组长|班长|站长|所长|科长|"
    "处长|局长|书记|主管|会计|快递员|快递小哥|外卖员|骑手|司机|师傅|保安|保洁|保姆|网格员|工作人员|员工|职工|同事|同学|"
    "老师|医生|护士|民警|警官|交警|辅警|城管|律师|中介|群主|丈夫|妻子|老公|老婆|爱人|儿子|女儿|父亲|母亲|爸爸|"
    "妈妈|我爸|我妈|爷爷|奶奶|外公|外婆|哥哥|姐姐|弟弟|妹妹|孩子|小孩|亲戚|朋友|同胞|居民|市民|村民|患者|病人|学生|"
    "家长|嫌疑人|叫|举报|转告|告诉|通知|联系|介绍|认识|委托|--|-"
)
# Words after which a name must follow, whatever its characters.
_NAME_WORDS = "委托人|代理人|监护人|收件人|寄件人|户名|账户名|申请人|签名|签字|落款|经办人|负责人|法人|名叫|叫做|名字"
NAME_AFTER_ROLE = re.compile(
    rf"(?:(?P<strong>{_NAME_WORDS})|{_ROLE_WORDS})(?:是|为|叫)?[:：]? ?(?P<sur>{SURNAME})(?P<given>[{_CJK}]{{1,2}})"
)
# The next name in a list: "联系人戴明轩、朱晓燕".
NAME_LIST_NEXT = re.compile(rf"[、和与及] ?(?P<sur>{SURNAME})(?P<given>[{_CJK}]{{1,2}})")
# Cheap pre-check: no trigger, honorific or role word means no Chinese name.
NAME_HINT = re.compile(
    r"我叫|我是|本人|姓名|联系人|来电人|投诉人|反映人|诉求人|举报人|当事人|户主|姓|"
    + _HONORIFIC + "|" + _SURNAME_HONORIFIC + "|" + _ROLE_WORDS + "|" + _NAME_WORDS
)
