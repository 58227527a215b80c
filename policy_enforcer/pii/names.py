"""Personal names introduced by a pattern.

Chinese has no spaces, so "我叫张伟反映…" gives no clue where the name ends.
The rule used here: a name is surname + one or two characters, and the second
given-name character is dropped when it (or the word it starts) is something
that usually *follows* a name in hotline text (反映, 的, 住, 先生, 电话…).
A few surname-initial words that show up after 我是 (车主, 高三, 房东…) are
rejected outright. This is deliberately conservative: precision matters more
than squeezing out the last names, which the operator can redact by hand.
"""

from __future__ import annotations

from .name_chars import GIVEN_NAME_CHARS
from .patterns import (
    FULL_NAME_HONORIFICS,
    HONORIFIC,
    NAME_AFTER_ROLE,
    NAME_HINT,
    NAME_LIST_NEXT,
    NAME_TRIGGER,
)
from .surnames import COMPOUND_SURNAMES, SINGLE_SURNAMES

__all__ = ["find_names"]

# Words that start right after a name, not inside it.
_STOP_WORDS = (
    "先生", "女士", "小姐", "师傅", "阿姨", "大爷", "大妈", "老师", "经理", "主任",
    "反映", "投诉", "来电", "举报", "电话", "手机", "联系", "业主", "住户", "居民",
    "家住", "住在", "今年", "身份", "要求", "表示", "现在", "目前", "小区", "号码",
    "同志", "本人", "一家", "夫妇", "老人", "家里", "已经", "称", "说",
)
# Single characters that never end a given name in this position.
_STOP_CHARS = frozenset(
    "的是在住说称要想和与及等反投来电手联业今昨身因现也就都又已被把给对从到去打请希"
    "觉发看认了啊呢吗我你他她这那号年月日岁楼室栋单元户先女师阿，。、；：！？"
)
# Surname-initial words that are not names ("我是车主", "我是高三学生").
_NOT_NAMES = (
    "车主", "房东", "房主", "高三", "高二", "高一", "高中", "高龄", "包工", "金融",
    "周边", "周围", "常住", "安全", "文员", "时候", "单位", "单身", "成都", "武汉",
    "江苏", "江西", "黄山", "石家庄", "张家口", "王府井", "应届", "全职", "方便",
    "白天", "夏天", "路人", "孙子", "孙女", "方面", "司机", "关于", "曾经", "向您", "于是", "任何",
)
# Words that end in a surname character but are occupations/places, so the
# honorific after them is not about a named person ("保安师傅", "语文老师").
_NOT_BEFORE_HONORIFIC = (
    "保安", "出租车", "网约车", "公交车", "货车", "专车", "私家车", "班主任", "语文",
    "历史", "门卫", "宿管", "主任", "公安", "值班", "车队", "治安",
)
# A "name" that contains or is followed by one of these is a place: "我是龙华区…".
_PLACE_SUFFIXES = frozenset("区市县镇村路街省")


def _is_place(text: str, start: int, end: int) -> bool:
    return not _PLACE_SUFFIXES.isdisjoint(text[start + 1:end + 1])
# Words that start right after a one-character given name in the "anywhere"
# rules even though their first character is also a given-name character.
_AFTER_NAME_WORDS = (
    "明天", "今天", "天天", "每天", "平时", "长期", "一直", "家里", "家门", "东西", "多次", "经常",
    "晚上", "早上", "中午", "下午", "上午", "大声", "大喊", "强行", "强制", "全家", "自己", "本人",
    "和", "与", "及", "说", "称", "讲", "在", "是",
)


def _starts_stop(text: str, pos: int) -> bool:
    if pos >= len(text):
        return True
    if text[pos] in _STOP_CHARS:
        return True
    return text.startswith(_STOP_WORDS, pos)


def _trigger_names(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in NAME_TRIGGER.finditer(text):
        g_start = m.start("given")
        if _starts_stop(text, g_start):
            continue
        end = m.end("given")
        if end - g_start == 2 and _starts_stop(text, g_start + 1):
            end = g_start + 1
        start = m.start("sur")
        if text.startswith(_NOT_NAMES, start) or _is_place(text, start, end):
            continue
        spans.append((start, end))
    return spans


_SINGLE = frozenset(SINGLE_SURNAMES)
_COMPOUND = frozenset(COMPOUND_SURNAMES)


def _is_cjk(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff"


def _full_name_before(text: str, pos: int) -> tuple[int, int] | None:
    """"，王小明先生": the whole run of Chinese characters between a non-Chinese
    boundary and the honorific is surname + 1-2 given characters."""
    start = pos
    while start > 0 and pos - start < 5 and _is_cjk(text[start - 1]):
        start -= 1
    if start > 0 and _is_cjk(text[start - 1]):
        return None  # run too long: part of a sentence, not a bare name
    run = text[start:pos]
    if text.startswith(_NOT_NAMES, start) or any(c in _STOP_CHARS for c in run):
        return None
    for sur_len, surnames in ((2, _COMPOUND), (1, _SINGLE)):
        if 1 <= len(run) - sur_len <= 2 and run[:sur_len] in surnames:
            return start, pos
    return None


def _honorific_names(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in HONORIFIC.finditer(text):
        pos = m.start()
        if m.group() in FULL_NAME_HONORIFICS:
            full = _full_name_before(text, pos)
            if full is not None:
                spans.append(full)
                continue
        # "张先生": the surname directly before; compound surnames first so
        # 欧阳女士 is not read as 阳女士.
        if text[pos - 2:pos] in _COMPOUND and pos >= 2:
            spans.append((pos - 2, pos))
        elif pos >= 1 and text[pos - 1] in _SINGLE and not text[:pos].endswith(_NOT_BEFORE_HONORIFIC):
            spans.append((pos - 1, pos))
    return spans


def _given_end(text: str, g_start: int, g_end: int, strong: bool = False) -> int | None:
    """End of the given name at ``g_start`` (one or two characters), or None.

    The first character must be a common given-name character, unless a
    strong cue (户名, 申请人, 名叫 …) already says a name follows. The second
    is kept when it is a given-name character that does not start a word
    which follows names ("何婷上门", "杜明的"), or when any character that is
    not such a word is itself followed by a clear boundary ("柳如烟被…").
    """
    if _starts_stop(text, g_start) or not (strong or text[g_start] in GIVEN_NAME_CHARS):
        return None
    if _is_place(text, g_start - 1, g_end):
        return None
    if g_end - g_start == 2:
        second = g_start + 1
        if _starts_stop(text, second) or text.startswith(_AFTER_NAME_WORDS, second):
            return second
        if text[second] not in GIVEN_NAME_CHARS and not _starts_stop(text, g_end):
            return second
    return g_end


def _role_names(text: str) -> list[tuple[int, int]]:
    """Names anywhere, after a role or relation word ("邻居王海涛把…")."""
    spans = []
    for m in NAME_AFTER_ROLE.finditer(text):
        start = m.start("sur")
        if text.startswith(_NOT_NAMES, start):
            continue
        end = _given_end(text, m.start("given"), m.end("given"), strong=m.group("strong") is not None)
        if end is None:
            continue
        spans.append((start, end))
    return spans + _surname_alone(text)


_SINGLE_SET = frozenset(SINGLE_SURNAMES)
_AFTER_SURNAME = ("的", "先生", "女士", "小姐")
_SURNAME_THEN_XING = ("男", "女", "人", "老板", "师傅")


def _surname_alone(text: str) -> list[tuple[int, int]]:
    """A surname on its own around 姓: "我姓钟，", "老板姓邹，", "摊主石姓男子"."""
    spans = []
    pos = text.find("姓")
    while pos != -1:
        nxt = pos + 1
        if nxt < len(text) and text[nxt] in _SINGLE_SET and (
            nxt + 1 == len(text) or not _is_cjk(text[nxt + 1]) or text.startswith(_AFTER_SURNAME, nxt + 1)
        ):
            spans.append((nxt, nxt + 1))
        elif pos > 0 and text[pos - 1] in _SINGLE_SET and text.startswith(_SURNAME_THEN_XING, nxt):
            spans.append((pos - 1, pos))
        pos = text.find("姓", nxt)
    return spans


def find_names(text: str) -> list[tuple[int, int]]:
    """Candidate name spans in priority order (trigger patterns first);
    the detector resolves overlaps. ``text`` must already be normalised."""
    if NAME_HINT.search(text) is None:
        return []
    spans = _trigger_names(text) + _honorific_names(text) + _role_names(text)
    return spans + _listed_after(text, spans)


def _listed_after(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The names listed after a found one: "联系人戴明轩、朱晓燕"."""
    out = []
    for _, end in spans:
        while (nxt := NAME_LIST_NEXT.match(text, end)) is not None:
            nxt_end = _given_end(text, nxt.start("given"), nxt.end("given"))
            if nxt_end is None or text.startswith(_NOT_NAMES, nxt.start("sur")):
                break
            out.append((nxt.start("sur"), nxt_end))
            end = nxt_end
    return out
