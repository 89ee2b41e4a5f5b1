"""Bilingual (English / Simplified Chinese) labels, units, help and valid ranges of input fields."""

from __future__ import annotations

# name: (label_en, label_zh, unit, hard_min, hard_max, help_en, help_zh)
CLINICAL: dict[str, tuple[str, str, str, float | None, float | None, str, str]] = {
    "age": ("Age", "年龄", "years", 18, 110, "Age at baseline", "基线时年龄"),
    "sex": ("Sex", "性别", "", None, None, "F = female, M = male", "F = 女性，M = 男性"),
    "bmi": ("Body-mass index", "体重指数 (BMI)", "kg/m²", 10, 70, "Weight / height²", "体重(kg)/身高(m)²"),
    "centre": ("Study centre", "研究中心", "", None, None, "Recruiting centre", "受试者入组的研究中心"),
    "arm": (
        "Treatment arm",
        "治疗组别",
        "",
        None,
        None,
        "exercise = exercise + NSAIDs; control = NSAIDs only",
        "exercise = 运动疗法+非甾体抗炎药；control = 仅非甾体抗炎药",
    ),
    "odi_baseline": (
        "Oswestry Disability Index (baseline)",
        "Oswestry功能障碍指数 (ODI，基线)",
        "points",
        0,
        100,
        "0 = no disability, 100 = maximal",
        "0 = 无功能障碍，100 = 最严重",
    ),
    "vas_baseline": (
        "Pain VAS (baseline)",
        "疼痛视觉模拟评分 (VAS，基线)",
        "cm",
        0,
        10,
        "0 = no pain, 10 = worst pain",
        "0 = 无痛，10 = 最剧烈疼痛",
    ),
    "joa_baseline": (
        "JOA low-back score (baseline)",
        "日本骨科协会腰痛评分 (JOA，基线)",
        "points",
        0,
        29,
        "0–29, higher = better",
        "0–29分，分数越高功能越好",
    ),
    "goutallier_grade": (
        "Goutallier grade",
        "Goutallier脂肪浸润分级",
        "grade",
        0,
        4,
        "Fatty infiltration grade 0–4 on MRI",
        "MRI上肌肉脂肪浸润分级 0–4级",
    ),
    "biering_sorensen_s": (
        "Biering-Sørensen endurance time",
        "Biering-Sørensen背伸肌耐力时间",
        "s",
        0,
        600,
        "Trunk-extensor endurance hold time",
        "躯干伸肌耐力保持时间",
    ),
    "semg_mf_slope": (
        "Multifidus sEMG median-frequency slope",
        "多裂肌表面肌电中位频率斜率",
        "%/s",
        None,
        None,
        "Fatigue index from surface EMG",
        "表面肌电疲劳指数",
    ),
    "hb_g_l": ("Haemoglobin", "血红蛋白", "g/L", 30, 250, "", ""),
    "wbc_10e9_l": ("White-cell count", "白细胞计数", "×10⁹/L", 0, 100, "", ""),
    "plt_10e9_l": ("Platelet count", "血小板计数", "×10⁹/L", 0, 2000, "", ""),
    "creatinine_umol_l": ("Creatinine", "血肌酐", "µmol/L", 0, 3000, "", ""),
    "alt_u_l": ("Alanine aminotransferase (ALT)", "丙氨酸氨基转移酶 (ALT)", "U/L", 0, 5000, "", ""),
    "ast_u_l": ("Aspartate aminotransferase (AST)", "天门冬氨酸氨基转移酶 (AST)", "U/L", 0, 5000, "", ""),
    "mean_ff_pct": (
        "Mean paraspinal fat fraction",
        "椎旁肌平均脂肪分数",
        "%",
        0,
        100,
        "Mean MRI fat fraction of the paraspinal muscles",
        "椎旁肌MRI平均脂肪分数",
    ),
}

MEASURE_LABELS = {
    "csa_cm2": ("cross-sectional area", "横截面积", "cm²", 0, None),
    "fcsa_cm2": ("functional (fat-free) cross-sectional area", "功能横截面积（去脂）", "cm²", 0, None),
    "volume_cm3": ("volume", "体积", "cm³", 0, None),
    "fat_fraction_pct": ("fat fraction", "脂肪分数", "%", 0, 100),
    "goutallier_grade": ("Goutallier grade", "Goutallier分级", "grade", 0, 4),
    "asymmetry_index": ("asymmetry index", "不对称指数", "", None, None),
}

MUSCLE_ZH = {
    "multifidus": "多裂肌",
    "erector_spinae": "竖脊肌",
    "psoas": "腰大肌",
    "quadratus_lumborum": "腰方肌",
}
SIDE_ZH = {"left": "左侧", "right": "右侧"}


def structure_labels(structure: str, level: str) -> tuple[str, str]:
    """English and Chinese text for a structure + level (e.g. 'multifidus left, L4' / '左侧多裂肌，L4')."""
    parts = structure.rsplit("_", 1)
    muscle, side = (parts[0], parts[1]) if len(parts) == 2 and parts[1] in SIDE_ZH else (structure, "")
    en = f"{muscle.replace('_', ' ')} {side}".strip()
    zh = f"{SIDE_ZH.get(side, '')}{MUSCLE_ZH.get(muscle, muscle)}"
    lv_en = "whole muscle" if level == "all" else level
    lv_zh = "全肌肉" if level == "all" else level
    return f"{en}, {lv_en}", f"{zh}，{lv_zh}"


def field_text(name: str) -> dict[str, object]:
    """label_en, label_zh, unit, hard_min, hard_max, help_en, help_zh for one input column."""
    if name in CLINICAL:
        en, zh, unit, lo, hi, hen, hzh = CLINICAL[name]
        return dict(label_en=en, label_zh=zh, unit=unit, hard_min=lo, hard_max=hi, help_en=hen, help_zh=hzh)
    if "__" in name:
        parts = name.split("__")
        feat, structure, level = ([*parts, "", ""])[:3]
        s_en, s_zh = structure_labels(structure, level)
        if feat in MEASURE_LABELS:
            m_en, m_zh, unit, lo, hi = MEASURE_LABELS[feat]
            return dict(
                label_en=f"{m_en.capitalize()} ({s_en})",
                label_zh=f"{m_zh}（{s_zh}）",
                unit=unit,
                hard_min=lo,
                hard_max=hi,
                help_en="From the ParaspinalSeg measurement table",
                help_zh="来自ParaspinalSeg测量表",
            )
        return dict(
            label_en=f"Radiomic feature {feat} ({s_en})",
            label_zh=f"影像组学特征 {feat}（{s_zh}）",
            unit="",
            hard_min=None,
            hard_max=None,
            help_en="From the ParaspinalRadiomics feature table (pyradiomics)",
            help_zh="来自ParaspinalRadiomics影像组学特征表（pyradiomics）",
        )
    pretty = name.replace("_", " ")
    return dict(
        label_en=pretty.capitalize(),
        label_zh=f"变量 {pretty}",
        unit="",
        hard_min=None,
        hard_max=None,
        help_en="",
        help_zh="",
    )
