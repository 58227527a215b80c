"""Common Chinese surnames used to anchor name detection.

Names have no checksum, so the detector only reports a name when it is
introduced by a pattern (我叫…, 联系人:…, …先生) *and* starts with a common
surname. The list is the ~200 most frequent single-character surnames (order
roughly follows the 2020 household-registration ranking) plus the compound
surnames people actually still carry. Rarer surnames that are also everyday
words (和, 平, 来, 都, 由, 区, 门…) are left out on purpose: including them
costs more false positives than the recall they buy.
"""

from __future__ import annotations

__all__ = ["COMPOUND_SURNAMES", "SINGLE_SURNAMES"]

SINGLE_SURNAMES: str = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
    "袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟"
    "熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文"
    "牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符"
    "舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房"
    "滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席"
    "卫米柏宗瞿桂全佟应臧闵苟邬边卞姬"
)

COMPOUND_SURNAMES: tuple[str, ...] = (
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
    "宇文", "司徒", "夏侯", "令狐", "澹台", "轩辕", "端木", "南宫", "西门", "独孤",
    "呼延", "闻人", "申屠", "万俟", "钟离", "太史", "赫连", "东郭", "第五", "拓跋",
)
