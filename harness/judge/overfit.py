"""The overfit gate: did the delivered checkpoint's validation loss rise beyond its noise while
training loss fell? Everything else that hints at overfitting is a warning on a PASS.

Pure like every gate (harness/judge/gates.py): curves and per-row scores in, a `GateResult` out,
its details holding every number behind it. `simulate_overfit` and `simulate_gap` run the gate
on simulated curves, for tests/test_overfit_gate.py and scripts/simulate_gates.py.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.stats import t as _student_t

from harness.judge import stats
from harness.judge.outcomes import FAIL, OVERFIT, PASS, SKIP, GateResult

# The overfit gate's policy, fixed before any row is seen (docs/statistics.md, "The overfit gate").
GAP_RELATIVE = 0.20  # warn when val loss is above train loss by more than 20% of it, beyond noise
OVERFIT_ADVICE = ("keep the best validation checkpoint (early_stopping_patience in the spec) or train fewer epochs, "
                  "chosen on validation loss alone")


@lru_cache(maxsize=1024)
def _t_quantile(p: float, df: float) -> float:
    return float(_student_t.ppf(p, df))


def _val_points(curves: list[dict], kept_step: int | None) -> tuple[list[dict], int]:
    """The val evaluations up to the kept step, by step (a step evaluated twice counts once, its
    last entry), and how many came after it: early stopping read those, but their weights were
    not the ones delivered."""
    by_step = {c["step"]: c for c in curves if c.get("split") == "val"}
    steps = sorted(by_step)
    read = [by_step[s] for s in steps if kept_step is None or s <= kept_step]
    return read, len(steps) - len(read)


def _row_losses(point: dict) -> np.ndarray | None:
    """An evaluation's per-row val losses (None for a row with no completion token), or None when
    the curve point has none (an adapter trained before they were recorded)."""
    rows = point.get("row_losses")
    if not rows:
        return None
    return np.array([math.nan if r is None else r for r in rows], dtype=float)


def _paired_rise(kept: np.ndarray, earlier: np.ndarray, alpha_each: float) -> dict | None:
    """The mean per-row rise of val loss from an earlier evaluation to the kept one, over the same
    rows, with its one-sided lower bound at alpha_each (a paired t interval); None on under 2 rows.

    A t interval, not `stats.paired_uplift`'s bootstrap: per-row losses are continuous, the mean
    of 100+ paired differences is close to normal, and the bound is exact arithmetic (no Monte
    Carlo error) at the small tail levels Bonferroni asks for (0.21% over 12 evaluations), where a
    percentile bootstrap needs far more resamples; and it runs thousands of times a second, so the
    gate's error rates can be simulated (gates.simulate_overfit)."""
    both = ~(np.isnan(kept) | np.isnan(earlier))
    d = kept[both] - earlier[both]
    n = len(d)
    if n < 2:
        return None
    rise, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    t_crit = _t_quantile(1 - alpha_each, n - 1)
    low = rise - t_crit * se
    return {"rows": n, "mean_kept": float(kept[both].mean()), "mean_earlier": float(earlier[both].mean()),
            "rise": rise, "rise_sd": sd, "se": se, "t_crit": t_crit, "low": low, "rose": low > stats.TIE_TOLERANCE}


def _train_span(train: list[tuple], start: int, end: int) -> tuple[tuple, tuple] | None:
    """(train loss logged at or before `start` (else the first one after it: step 0 has none yet),
    train loss logged at or before `end`), as (step, loss); None when the span holds no two logs."""
    before = [p for p in train if p[0] <= start] or [p for p in train if start < p[0] <= end][:1]
    at = [p for p in train if p[0] <= end]
    if not before or not at or at[-1][0] <= before[-1][0]:
        return None
    return before[-1], at[-1]


def _rising_run(val: list[dict], train: list[tuple], rising_evals: int) -> str | None:
    """The old heuristic, kept for curves without per-row losses: val loss rose `rising_evals`
    evaluations in a row while train loss fell. It has no noise model (on a flat noisy plateau it
    fires on 15%-85% of runs with 3-12 evaluations), so it is only ever a warning."""
    points = [(p["step"], p["loss"]) for p in val]
    for end in range(rising_evals, len(points)):
        window = points[end - rising_evals:end + 1]
        if all(b[1] > a[1] for a, b in zip(window, window[1:])):
            inside = [loss for step, loss in train if window[0][0] <= step <= window[-1][0]]
            if len(inside) >= 2 and inside[-1] < inside[0]:
                said = ", ".join(f"step {s}: {loss:.4f}" for s, loss in window)
                return (f"val loss rose {rising_evals} evaluations in a row ({said}) while train loss fell "
                        f"{inside[0]:.4f} -> {inside[-1]:.4f}")
    return None


def fit_gap(train_losses: list[float] | None, val_losses: list[float] | None, *, relative: float = GAP_RELATIVE,
            confidence: float = 0.95) -> dict | None:
    """How much worse the kept checkpoint fits new rows than the rows it trained on, with its
    noise; None without 2 rows of each. Mean per-row loss of the val rows at the kept step minus
    that of the train rows as they were trained on in the epoch up to it (harness.candidate.train).

    Train and val are different rows, so the interval is unpaired (Welch's t). `beyond_bar` when
    the one-sided lower bound (at (1 - confidence) / 2) of val - (1 + relative) x train is above
    0: val loss above train loss by more than `relative` of it, beyond noise. Judging that one
    linear statistic keeps the bar's own noise (it moves with the train loss) inside the interval.
    The train losses were measured with dropout on and with the weights still moving through the
    epoch, so they sit at or above what the kept weights give those rows: the gap can only be
    understated, and the warning errs towards silence. The curves hold both sides already, so
    no row is scored again for it."""
    if not train_losses or val_losses is None or len(train_losses) < 2:
        return None
    tr = np.asarray(train_losses, dtype=float)
    va = np.asarray(val_losses, dtype=float)
    va = va[~np.isnan(va)]
    if len(va) < 2:
        return None
    alpha = (1 - confidence) / 2

    def welch(scale: float) -> tuple[float, float]:
        a, b = va.var(ddof=1) / len(va), scale ** 2 * tr.var(ddof=1) / len(tr)
        if a + b == 0:
            return 0.0, 0.0  # no spread on either side: the means are exact
        df = (a + b) ** 2 / (a ** 2 / (len(va) - 1) + b ** 2 / (len(tr) - 1))
        return math.sqrt(a + b), _t_quantile(1 - alpha, df)

    train_mean, val_mean = float(tr.mean()), float(va.mean())
    gap, (gap_se, gap_t) = val_mean - train_mean, welch(1.0)
    excess, (excess_se, excess_t) = val_mean - (1 + relative) * train_mean, welch(1 + relative)
    excess_low = excess - excess_t * excess_se
    return {"train": train_mean, "val": val_mean, "train_rows": len(tr), "val_rows": len(va), "gap": gap,
            "gap_se": gap_se, "gap_low": gap - gap_t * gap_se, "gap_high": gap + gap_t * gap_se,
            "relative": relative, "bar": relative * train_mean, "excess": excess, "excess_se": excess_se,
            "excess_t": excess_t, "excess_low": excess_low, "confidence": confidence,
            "beyond_bar": excess_low > stats.TIE_TOLERANCE}


def _gap_text(gap: dict) -> str:
    confidence = f"{gap['confidence'] * 100:g}%"
    return (f"val loss {gap['val']:.4f} at the kept step vs train loss {gap['train']:.4f} as trained on "
            f"({gap['val_rows']} and {gap['train_rows']} rows): gap {gap['gap']:+.4f} ({confidence} CI "
            f"{gap['gap_low']:+.4f}..{gap['gap_high']:+.4f})")


def gate(curves: list[dict], *, train_row_losses: list[float] | None = None, kept_step: int | None = None,
         confidence: float = 0.95, gap_relative: float = GAP_RELATIVE, rising_evals: int = 2) -> GateResult:
    """FAIL when the delivered checkpoint's validation loss is above an earlier evaluation's beyond
    its noise while train loss fell between them; everything else that hints at overfitting is a
    warning on a PASS.

    The curve is read only up to `kept_step` (the checkpoint whose weights were delivered: early
    stopping's best, else the last step; None reads it all). Each earlier evaluation j whose
    per-row val losses (`row_losses`) cover the same rows is compared with the kept one: a paired
    t bound on mean(kept - j) per row, one-sided at alpha = (1 - confidence) / 2 spread over the
    K comparisons (Bonferroni: alpha / K each), so a flat plateau FAILs at most alpha of the time
    however many evaluations there are. It FAILs when some j's lower bound is above 0 and train
    loss fell from j to the kept step. Only validation is read, so its advice can never point at
    the test split.

    Warnings, never a FAIL: a curve without per-row losses (an adapter from the cache trained
    before they were recorded) gets the old heuristic, `rising_evals` rises in a row; and the fit
    gap (`fit_gap`): the kept step's val loss above `train_row_losses` by more than `gap_relative`
    of them, beyond noise. A model can fit its train rows far better than new ones and still be
    the best on test: the five-percent rule, not this gap, judges test.
    """
    alpha = (1 - confidence) / 2
    val, after = _val_points(curves, kept_step)
    train = sorted((c["step"], c["loss"]) for c in curves if c.get("split") == "train")
    gap = fit_gap(train_row_losses, _row_losses(val[-1]) if val else None, relative=gap_relative,
                  confidence=confidence)
    details = {"confidence": confidence, "alpha": alpha, "kept_step": kept_step,
               "judged_step": val[-1]["step"] if val else None, "evaluations_after_kept": after,
               "val_curve": [[p["step"], p["loss"]] for p in val], "noise_model": None, "comparisons": [],
               "bonferroni_k": 0, "alpha_each": None, "rising_evals": rising_evals, "gap": gap,
               "gap_relative": gap_relative, "warnings": []}
    details["train_curve"] = [list(p) for p in train if not val or p[0] <= val[-1]["step"]]
    if not val:
        return GateResult(OVERFIT, SKIP, "no validation curve to judge", {**details, "outcome": SKIP})
    warnings, finding, said = details["warnings"], None, []
    if val:
        kept = val[-1]
        said.append(f"val loss {val[0]['loss']:.4f} -> {kept['loss']:.4f} over {len(val)} evaluations")
        if after:
            said[-1] += (f" up to the kept step {kept['step']} ({after} later evaluation(s) not read: not the "
                         f"weights delivered)")
        kept_rows = _row_losses(kept)
        if kept_rows is None:
            details["noise_model"] = "none: no per-row validation losses on this curve (trained before they were kept)"
            heuristic = _rising_run(val, train, rising_evals)
            if heuristic:
                warnings.append(f"{heuristic}; a heuristic with no noise model, as this curve has no per-row "
                                f"validation losses (train again to judge it with them)")
        else:
            details["noise_model"] = "paired t on per-row validation losses, Bonferroni over earlier evaluations"
            earlier = [(p, r) for p, r in ((p, _row_losses(p)) for p in val[:-1])
                       if r is not None and len(r) == len(kept_rows)]
            k = len(earlier)
            alpha_each = alpha / max(k, 1)
            details.update(bonferroni_k=k, alpha_each=alpha_each)
            for point, rows in earlier:
                c = _paired_rise(kept_rows, rows, alpha_each)
                if c is None:
                    continue
                span = _train_span(train, point["step"], kept["step"])
                c.update(step=point["step"], train_from=list(span[0]) if span else None,
                         train_to=list(span[1]) if span else None,
                         train_fell=span is not None and span[1][1] < span[0][1])
                details["comparisons"].append(c)
            comparisons = details["comparisons"]
            level = f"one-sided {alpha_each:.3%} = {alpha:.1%}/{k}"

            def rise_text(c: dict) -> str:
                return (f"mean row val loss {c['mean_kept']:.4f} at the kept step {kept['step']} vs "
                        f"{c['mean_earlier']:.4f} at step {c['step']}: {c['rise']:+.4f} per row, lower end "
                        f"{c['low']:+.4f} ({level}, paired t on {c['rows']} val rows)")

            rose = [c for c in comparisons if c["rose"]]
            overfit_rises = [c for c in rose if c["train_fell"]]
            if overfit_rises:
                c = max(overfit_rises, key=lambda c: c["low"])
                finding = (f"val loss rose beyond its noise while train loss fell: {rise_text(c)}, while train loss "
                           f"fell {c['train_from'][1]:.4f} -> {c['train_to'][1]:.4f}; {OVERFIT_ADVICE}")
            elif rose:
                c = max(rose, key=lambda c: c["low"])
                warnings.append(f"val loss rose beyond its noise but train loss did not fall over that span "
                                f"({rise_text(c)}): not the overfitting pattern; an unstable run?")
            elif comparisons:
                c = max(comparisons, key=lambda c: c["low"])
                said.append(f"the kept checkpoint's val loss is above no earlier evaluation's beyond noise "
                            f"(closest: {rise_text(c)})")
            else:
                said.append("no earlier evaluation with per-row losses to compare the kept one with")
    if gap is not None:
        if gap["beyond_bar"]:
            warnings.append(f"{_gap_text(gap)}, more than {gap_relative:.0%} above the train loss beyond noise "
                            f"(val - {1 + gap_relative:g} x train: lower end {gap['excess_low']:+.4f} > 0); the "
                            f"train rows are fit far better than new ones, which is no harm in itself: the "
                            f"five-percent rule judges test, and training is not to be tuned on the test score")
        else:
            said.append(_gap_text(gap))
    outcome = FAIL if finding else PASS
    details["outcome"] = outcome
    message = finding if finding else "no sign of overfitting: " + "; ".join(said)
    message += "".join(f"; warning: {w}" for w in warnings)
    return GateResult(OVERFIT, outcome, message, details)


def simulated_curves(rng: np.random.Generator, evaluations: int, *, rise: float = 0.0, rows: int = 120,
                     noise: float = 0.3) -> list[dict]:
    """One synthetic run's curves with a known truth, for simulating the overfit gate.

    `rows` val rows with a fixed difficulty each (Gamma(2, 0.5): 1 nat on average), scored at
    step 0 (untrained: 2 nats more) and at `evaluations` evaluations 10 steps apart, every one
    adding iid N(0, noise) to each row. The true val loss drops to its plateau at the first
    evaluation and stays there when `rise` is 0; otherwise it stays there up to the evaluation a
    third of the way in (the first, for 3 or 4 evaluations) and then rises linearly, `rise` nats
    above the plateau at the last. Train loss, logged every 5 steps, falls throughout."""
    difficulty = rng.gamma(2.0, 0.5, rows)
    low_point = max(1, evaluations // 3)
    curves = [{"step": s, "epoch": None, "split": "train", "loss": 1.5 * math.exp(-s / (10 * evaluations))}
              for s in range(5, 10 * evaluations + 1, 5)]
    for t in range(evaluations + 1):
        trend = 2.0 if t == 0 else rise * max(0, t - low_point) / max(evaluations - low_point, 1)
        losses = difficulty + trend + rng.normal(0.0, noise, rows)
        curves.append({"step": 10 * t, "epoch": None, "split": "val", "loss": float(losses.mean()),
                       "row_losses": losses.tolist()})
    return curves


def simulate_overfit(evaluations: int, *, draws: int, rise: float = 0.0, rows: int = 120, noise: float = 0.3,
                     early_stopping: bool = False, row_losses: bool = True, confidence: float = 0.95,
                     seed: int = 0) -> dict:
    """How often `overfit` FAILs (and warns) on `draws` runs from `simulated_curves`. early_stopping:
    the kept step is the evaluation with the lowest mean val loss, the checkpoint
    load_best_model_at_end reloads, instead of the last. row_losses=False: the curves carry none
    (as an adapter cached before they were recorded)."""
    rng = np.random.default_rng(seed)
    fails = warned = 0
    for _ in range(draws):
        curves = simulated_curves(rng, evaluations, rise=rise, rows=rows, noise=noise)
        if not row_losses:
            curves = [{k: v for k, v in c.items() if k != "row_losses"} for c in curves]
        kept = None
        if early_stopping:
            kept = min((c for c in curves if c["split"] == "val"), key=lambda c: c["loss"])["step"]
        v = gate(curves, kept_step=kept, confidence=confidence)
        fails += v.outcome == FAIL
        warned += bool(v.details["warnings"])
    return {"FAIL": fails / draws, "warned": warned / draws, "draws": draws}


def simulate_gap(train_loss: float, val_loss: float, *, draws: int, train_rows: int = 480, val_rows: int = 120,
                 relative: float = GAP_RELATIVE, seed: int = 0) -> float:
    """How often the fit-gap warning fires when the true mean per-row losses are train_loss and
    val_loss: each row's loss Gamma-distributed (shape 2, so its sd is 0.71 x its mean, about the
    spread of per-row losses of a small model), train_rows and val_rows of them."""
    rng = np.random.default_rng(seed)
    warned = 0
    for _ in range(draws):
        gap = fit_gap(rng.gamma(2.0, train_loss / 2, train_rows).tolist(),
                      rng.gamma(2.0, val_loss / 2, val_rows).tolist(), relative=relative)
        warned += gap is not None and gap["beyond_bar"]
    return warned / draws
