"""The reference CMA-ES constants (Hansen 2016 tutorial, full covariance with negative weights;
docs/namm-spec.md §8).

The suite runs the ``cma`` package, which belongs to the same family but sets its own learning rates
(and, for the default separable variant, rescales them for a diagonal covariance). These formulas are
kept to document and test what the reference used, and to compare it with the package in reports.
"""

from __future__ import annotations

import math


def spec_constants(d: int, population: int) -> dict[str, float | list[float]]:
    """Constants of docs/namm-spec.md §8 for dimension ``d`` and population ``λ`` (μ = λ/2)."""
    mu = population // 2
    raw = [math.log((population + 1) / 2) - math.log(i) for i in range(1, population + 1)]
    positive = [w for w in raw if w > 0]
    negative = [w for w in raw if w <= 0]
    mu_eff = sum(positive) ** 2 / sum(w * w for w in positive)
    mu_eff_neg = sum(negative) ** 2 / sum(w * w for w in negative) if negative else 0.0
    c1 = 2 / ((d + 1.3) ** 2 + mu_eff)
    cmu = min(1 - c1 - 1e-8, 2 * (mu_eff - 2 + 1 / mu_eff) / ((d + 2) ** 2 + mu_eff))
    alpha = min(1 + c1 / cmu, 1 + 2 * mu_eff_neg / (mu_eff + 2), (1 - c1 - cmu) / (d * cmu))
    weights = [w / sum(positive) for w in positive] + [alpha * w / -sum(negative) for w in negative]
    c_sigma = (mu_eff + 2) / (d + mu_eff + 5)
    d_sigma = 1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (d + 1)) - 1) + c_sigma
    cc = (4 + mu_eff / d) / (d + 4 + 2 * mu_eff / d)
    chi = math.sqrt(d) * (1 - 1 / (4 * d) + 1 / (21 * d * d))
    return {"mu": mu, "mu_eff": mu_eff, "c1": c1, "cmu": cmu, "alpha": alpha, "weights": weights,
            "c_sigma": c_sigma, "d_sigma": d_sigma, "cc": cc, "chi": chi}
