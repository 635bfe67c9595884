"""A synthetic credit data set with known semantics: the worked example for reason codes.

Each row is a loan applicant; `defaulted` is 1 when the loan was not repaid. The chance
of default is a logistic function of a documented risk score, so which features matter
and in which direction is known exactly (tests rely on it):

    risk = -1.2 + 5.0 (debt_ratio - 0.35) + 0.7 late_payments - 0.05 (history_years - 8)
           - 0.02 (income - 45) + 0.015 (loan_amount - 20) + {employed: 0, self-employed: 0.4, unemployed: 1.5}
    P(defaulted) = 1 / (1 + exp(-risk))

income and loan_amount are in thousands a year / thousands; debt_ratio is monthly debt
payments over monthly income; history_years the age of the oldest credit line. A lender
refuses the applicants the model predicts to default.
"""

from __future__ import annotations

import numpy as np

from leanlens.errors import BadOption

EMPLOYMENT_RISK = {"employed": 0.0, "self-employed": 0.4, "unemployed": 1.5}
TARGET = "defaulted"


def credit_applications(n: int = 1000, seed: int = 0):
    """`n` applicants as a pandas DataFrame (six features and `defaulted`), the same for the same seed."""
    import pandas as pd

    if not isinstance(n, int) or n < 1:
        raise BadOption(f"n={n!r}", "pass a positive number of applicants")
    rng = np.random.default_rng(seed)
    employment = rng.choice(list(EMPLOYMENT_RISK), size=n, p=[0.75, 0.15, 0.10])
    frame = pd.DataFrame({
        "income": np.round(rng.lognormal(np.log(45), 0.4, n), 1),
        "debt_ratio": np.round(rng.beta(2.0, 4.0, n), 3),
        "history_years": np.round(rng.uniform(0, 30, n), 1),
        "late_payments": rng.poisson(0.6, n),
        "loan_amount": np.round(rng.lognormal(np.log(20), 0.5, n), 1),
        "employment": employment,
    })
    frame[TARGET] = (rng.random(n) < 1 / (1 + np.exp(-risk(frame)))).astype(int)
    return frame


def risk(frame) -> np.ndarray:
    """The documented risk score (log-odds of default) of each applicant."""
    return (-1.2 + 5.0 * (frame["debt_ratio"] - 0.35) + 0.7 * frame["late_payments"]
            - 0.05 * (frame["history_years"] - 8) - 0.02 * (frame["income"] - 45)
            + 0.015 * (frame["loan_amount"] - 20) + frame["employment"].map(EMPLOYMENT_RISK)).to_numpy()
