"""A fitted decision tree as readable rules: feature names, categories by name, each leaf's decision."""

from __future__ import annotations

import numpy as np

from leanlens.insight.tabular import Table

LEAF = -1  # scikit-learn's child index of a leaf


def tree_rules(tree, table: Table, classes: np.ndarray) -> str:
    """One line a split and a leaf, indented by depth:

        debt_ratio <= 0.4125
        |   late_payments <= 1.5
        |   |   -> 0 (92% of 310 rows)
    """
    structure = tree.tree_
    lines: list[str] = []

    def walk(node: int, depth: int) -> None:
        indent = "|   " * depth
        if structure.children_left[node] == LEAF:
            shares = structure.value[node][0] / structure.value[node][0].sum()
            best = int(np.argmax(shares))
            decision = classes[int(tree.classes_[best])]
            lines.append(f"{indent}-> {decision} ({shares[best]:.0%} of {int(structure.n_node_samples[node])} rows)")
            return
        below, above = conditions(table, int(structure.feature[node]), float(structure.threshold[node]))
        lines.append(f"{indent}{below}")
        walk(int(structure.children_left[node]), depth + 1)
        lines.append(f"{indent}{above}")
        walk(int(structure.children_right[node]), depth + 1)

    walk(0, 0)
    return "\n".join(lines)


def conditions(table: Table, j: int, threshold: float) -> tuple[str, str]:
    """The two sides of a split on feature j: `name <= t` / `name > t`, or the categories on each side."""
    name = table.feature_names[j]
    categories = table.categories[j]
    if categories is None:
        return f"{name} <= {threshold:.4g}", f"{name} > {threshold:.4g}"
    codes = np.arange(len(categories))
    left = [str(categories[c]) for c in codes if c <= threshold]
    right = [str(categories[c]) for c in codes if c > threshold]
    return f"{name} in {{{', '.join(left)}}}", f"{name} in {{{', '.join(right)}}}"
