"""`NumericalError`: how far an explanation may be from the exact one, as its method estimates it.

Four kinds, each what its method can honestly say about itself:
- "completeness" (IG): |delta| a sample, the gap between the attributions' sum and
  f(x) - f(baseline), which the exact integral closes; refined to a `tol`, also `change`,
  what the last refinement moved the values, sum |v_k - v_k-1| / sum |v_k|. The sum can
  be right while single values are not (on a ReLU net their errors cancel: 4e-3 of the gap
  in the sum, 2-14 % per feature on the demo CNN); `change` estimates the per-feature
  error, usually from above (ReLU nets: 1.7-2.3x the real error on the demo CNN, 1-8x on a
  test MLP, where one sample came to 0.98x; smooth nets: far above, since it measures the
  level before the last);
- "standard_error" (KernelSHAP): one standard error a value, from the sampling design;
- "noise_standard_error" (SmoothGrad): one standard error a value over the noisy copies
  averaged, std / sqrt(nt_samples), against the map's largest |value| (there is no score gap);
  it shrinks as 1 / sqrt(nt_samples);
- "fit_r2" (LIME): each sample's weighted R² of its linear surrogate (not an error bar:
  how much of the model's local behaviour the surrogate explains).
Methods with no such estimate (saliency, CAM, occlusion...) leave the explanation's
`error` as None, and `describe_error` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leanlens.errors import BadOption
from leanlens.explain.options import positive_int, real

KINDS = ("completeness", "standard_error", "noise_standard_error", "fit_r2")
# what each kind's error is, and what its relative error is measured against (its `gap`)
MEASURES = {
    "completeness": ("completeness error |delta|", "|f(x) - f(baseline)|"),
    "standard_error": ("standard error (worst value)", "|f(x) - f(baseline)|"),
    "noise_standard_error": ("standard error over the noisy copies (worst value)", "largest |value|"),
}
DEFAULT_MAX_SAMPLES = 2**16


def sample_cap(tol, max_samples) -> int | None:
    """The most coalitions a sampling method refining to `tol` may use (None without tol); checks both."""
    if tol is None:
        if max_samples is not None:
            raise BadOption("max_samples without tol", "pass tol= to refine up to max_samples, or set samples=")
        return None
    real("tol", tol, "use a relative standard error > 0, e.g. 0.01", low=0, strict=True)
    if max_samples is None:
        return DEFAULT_MAX_SAMPLES
    return positive_int("max_samples", max_samples, "use an int >= 2, e.g. 65536")


@dataclass(frozen=True)
class NumericalError:
    kind: str  # one of KINDS
    values: np.ndarray  # (N,) a sample, or the attributions' shape for a standard error a value
    # |f(x) - f(baseline)| a sample, what `tol` is relative to (KernelSHAP, LIME: never below 4 ulps of
    # the end scores / tol); SmoothGrad: the map's largest |value|
    gap: np.ndarray | None = None
    tol: float | None = None  # the relative tolerance asked for, if any
    evaluations: np.ndarray | None = None  # model evaluations each sample took
    change: np.ndarray | None = None  # (N,) IG refined to tol: sum |v_k - v_k-1| / sum |v_k|, the last refinement's
    feature_tol: float | None = None  # IG: the most `change` asked for, if any

    @property
    def relative(self) -> np.ndarray | None:
        """Each sample's largest error over its score gap (SmoothGrad: its largest value), (N,); None for a fit R²."""
        if self.kind == "fit_r2" or self.gap is None:
            return None
        worst = np.abs(self.values).reshape(len(self.values), -1).max(1)
        return worst / np.maximum(self.gap, np.finfo(np.float64).tiny)

    @property
    def met(self) -> np.ndarray | None:
        """Whether each sample reached `tol`; None when no tolerance was asked for."""
        relative = self.relative
        # the refinement checked |delta| <= tol |gap|; dividing instead can differ in the last bit
        if self.tol is None or relative is None:
            return None
        met = relative <= self.tol * (1 + 1e-12)
        return met if self.feature_tol is None else met & (self.change <= self.feature_tol)

    def __str__(self) -> str:
        if self.kind == "fit_r2":
            return f"surrogate fit R²: median {np.median(self.values):.3g}, min {np.min(self.values):.3g}"
        what, against = MEASURES[self.kind]
        relative = self.relative
        line = f"{what} / {against}: median {np.median(relative):.3g}, max {np.max(relative):.3g}"
        if self.evaluations is not None:
            line += f"; {int(np.min(self.evaluations))}-{int(np.max(self.evaluations))} evaluations a sample"
        if self.change is not None:
            line += (f"; the last refinement moved the values by median {np.median(self.change):.3g}, "
                     f"max {np.max(self.change):.3g} (sum |change| / sum |value|, per feature)")
        if self.tol is not None:
            missed = int((~self.met).sum())
            asked = f"tol {self.tol:g}" + (f", feature_tol {self.feature_tol:g}," if self.feature_tol else "")
            line += f"; {asked} met by {len(relative) - missed} of {len(relative)} samples"
            if missed:
                line += " (the others stopped at the evaluation cap: their errors above are the real ones)"
        return line

    def brief(self) -> str:
        """A table cell: the median and worst relative error (IG's |delta|, and refined to a tol its
        per-feature change; KernelSHAP's s.e.), or LIME's R²."""
        if self.kind == "fit_r2":
            return f"R² median {np.median(self.values):.2g}, min {np.min(self.values):.2g}"
        relative = self.relative
        what = "|δ|" if self.kind == "completeness" else "s.e." if self.kind == "standard_error" else "noise s.e."
        cell = f"{what} median {np.median(relative):.1e}, max {np.max(relative):.1e}"
        if self.change is not None:  # completeness is a sum: say what single values did too
            cell += f"; per-feature change median {np.median(self.change):.1e}, max {np.max(self.change):.1e}"
        return cell

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays an .npz keeps, prefixed `error_`."""
        out = {"error_values": self.values}
        if self.gap is not None:
            out["error_gap"] = self.gap
        if self.evaluations is not None:
            out["error_evaluations"] = self.evaluations
        if self.change is not None:
            out["error_change"] = self.change
        return out

    def header(self) -> dict:
        return {"kind": self.kind, "tol": self.tol, "feature_tol": self.feature_tol}


ERROR_ARRAYS = ("error_values", "error_gap", "error_evaluations", "error_change")


def error_from_npz(header, arrays: dict[str, np.ndarray]) -> NumericalError | None:
    """Pops the `error_*` arrays and rebuilds the error from them and its header entry."""
    found = {key: arrays.pop(key) for key in ERROR_ARRAYS if key in arrays}
    if not isinstance(header, dict) or header.get("kind") not in KINDS or "error_values" not in found:
        return None
    return NumericalError(header["kind"], found["error_values"], found.get("error_gap"), _number(header.get("tol")),
                          found.get("error_evaluations"), found.get("error_change"),
                          _number(header.get("feature_tol")))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def describe_error(error: NumericalError | None, method: str) -> str:
    """One line for a report or the CLI; a method without an estimate is named plainly."""
    if error is None:
        return f"numerical error: {method} gives no estimate of its own error"
    return f"numerical error: {error}"
