"""Characters common in Chinese given names.

Used only by the name rules that fire *anywhere* in a sentence (after a role
word such as 邻居/房东/快递员, in a list, after a signature dash): there the
words that follow a surname character are as often ordinary words (周末, 马上,
高考, 常年, 金额) as given names, and a given name is recognised by its
characters. Written by hand from the characters that dominate given names
(virtues, nature, seasons, precious things, beauty, strength); a name whose
given part uses none of them is missed by those rules, not misread.
"""

from __future__ import annotations

__all__ = ["GIVEN_NAME_CHARS"]

GIVEN_NAME_CHARS: frozenset[str] = frozenset(
    # virtues and wishes
    "德仁义礼智信忠孝勤俭诚毅坚贤良善厚淑惠贞慧恩慈爱心志意恒敬谦谨慎悟惟儒"
    "福寿禄喜乐欢笑悦怡恬甜康宁安泰昌盛兴旺发达财富贵顺和祥瑞祯祺吉庆嘉"
    # strength and talent
    "伟强刚勇军兵武威雄豪杰英才俊彪虎猛力功建立成胜捷锐锋铁战帅壮凯克毅斌"
    # brightness, sky, seasons
    "明亮光辉晖晓晨曦旭阳昊昕晗晴春夏秋冬月星辰云雨雪霜露虹霞雷霆震霖霏"
    "天宇宙晟景晶智曜朗朝昆昭晋易昱昀煜熙烁烨焕炜炎灿然"
    # water, mountains, plants
    "江河湖海波涛浩洋泽润涵淼清澄源泉溪潇漫沛鸿洪洲浚渊湘滨漪澜灏沁沐泓泳"
    "山峰岩石磊坤垚城岚峻崇松柏竹梅兰菊荷莲芙蓉桃杏桂枫杨柳森林树楠桐梓彬杉"
    "芳芬芝芸苗茜荣莎莹萌蓓蕊薇若茹芮菁萱蔚艺茗草莉菲萍蓝芷茵蕙蕴蔓叶"
    # birds, animals, jewels
    "凤燕鸣翔飞龙麟骏驰腾跃鹏鹤鹰鸾麒鲲骁玉珠宝金银鑫铭锦钰珊珍珏珑琛琦琪琬"
    "琳琴瑛瑜瑶璇璐璞玥玮环珂琼玲瑾"
    # beauty and grace
    "美丽秀雅婉娴婷妮娇媛姗嫣妙姝娅婕懿馨娜娟婧妍倩俏仪依伊优悠忆思念"
    "静雯洁颖欣艳丹红彤紫青碧翠素纯绮绯"
    # culture and ambition
    "文章诗书画琴棋词韵音歌舞墨砚笔卓越超凡逸轩宸宣容宜宏宣定实宪寒寅"
    "国邦家华夏中汉民生正直方平全世远达道路航舟帆"
    "广庭延弘彦彩影征律得循微承振敏教斐新望朋本杰栋格桦梁楷欢永汝治"
    "添温溢爽牧甲申男畅登白百皓盈真睿知硕礼祖祝禹科程稳笑筱简纳绍维缘翰耀"
    "聪能自舒航茂范行衡裕西观言语豪贝资赋赫运进连迎逸郁镇长闻靖韬风香"
    "高丰乔亚京亭仙令伦佑健傲元先冰凌创加千升南博友双君启哲唯园培基堃士"
    "大奇奕如姣姿娥子孟季学守宗尚少巧希年幸庚少有朵柔梦歆水汀池灵炳焱"
    "玄理皎砚秉笛纬绪群翊翼耘胤良苏莱萧融衍诺谊豫贺赞轶迪通醇钊钦闯阔"
    "隆雁韶颂飒馥魁鼎冉小佳"
)
