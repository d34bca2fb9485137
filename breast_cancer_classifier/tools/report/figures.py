"""Static plots of the report (matplotlib, off screen): the subgroup AUCs of one model.

The curves and reliability diagrams come from :mod:`evaluate` and :mod:`calibration`
(:mod:`.evaluation`); this module draws only what they lack: one row per subgroup, its AUC
and 95% CI, the overall AUC as a vertical line, marked subgroups in red.
"""

from io import BytesIO

from .subgroups import OVERALL, SUBGROUP_LABELS

ROW_H, HEAD_H, WIDTH = 0.24, 0.9, 10.0
MARKED, PLAIN, SMALL = "#c00000", "#1f4e9a", "#999999"


def subgroup_png(rows, model):
    """PNG bytes: malignant and benign panels of ``model``'s subgroup rows, or None when no
    subgroup has an AUC."""
    from matplotlib.figure import Figure

    rows = [r for r in rows if r["model"] == model]
    groups = list(dict.fromkeys((r["attribute"], r["value"]) for r in rows
                                if r["attribute"] != OVERALL))
    if not groups or all(r["auc"] is None for r in rows):
        return None
    fig = Figure(figsize=(WIDTH, HEAD_H + ROW_H * len(groups)), dpi=100, layout="constrained")
    for ax, label in zip(fig.subplots(1, len(SUBGROUP_LABELS), sharey=True), SUBGROUP_LABELS):
        _panel(ax, [r for r in rows if r["label"] == label], groups, label)
    fig.suptitle(f"ROC AUC by subgroup, {model} model (95% bootstrap CI; red: CI below the "
                 "overall AUC; grey: too small)", fontsize=10)
    buffer = BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _panel(ax, rows, groups, label):
    by_group = {(r["attribute"], r["value"]): r for r in rows}
    overall = next((r["auc"] for r in rows if r["attribute"] == OVERALL), None)
    for y, group in enumerate(groups):
        row = by_group.get(group)
        if row is None or row["auc"] is None:
            continue
        color = MARKED if row["below"] else SMALL if row["note"].startswith("too") else PLAIN
        if row["ci_low"] is not None:
            ax.plot([row["ci_low"], row["ci_high"]], [y, y], color=color, linewidth=1.5)
        ax.plot([row["auc"]], [y], "o", color=color, markersize=4)
    if overall is not None:
        ax.axvline(overall, color="0.3", linestyle="--", linewidth=1,
                   label=f"overall {overall:.3f}")
        ax.legend(loc="lower left", fontsize=8)
    ax.axvline(0.5, color="0.8", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(groups)), [f"{a}: {v}" for a, v in groups], fontsize=8)
    ax.set(xlim=(0, 1), ylim=(len(groups) - 0.5, -0.5), xlabel="ROC AUC (breasts)",
           title=label.capitalize())
    ax.grid(axis="x", alpha=0.3)
