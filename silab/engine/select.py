"""Best-of-N selection and the round's measurements, on plain arrays (no model needed).

Arrays are [prompts, samples]: `logprob` summed raw log-probs, `length` tokens, `score` the judge's
score in [0, 1], `correct` the answer checker's verdict.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata


def best_of_n(logprob, length, score, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt: among samples with score >= sigma the lowest length-normalised NLL; if none
    passes, the highest-scored sample. Returns (pick index, fell back)."""
    nll_norm = -logprob / np.maximum(length, 1)
    passed = score >= sigma
    ranked = np.where(passed, nll_norm, np.inf)
    picks = np.where(passed.any(1), ranked.argmin(1), score.argmax(1))
    return picks, ~passed.any(1)


def roc_auc(score: np.ndarray, label: np.ndarray) -> float | None:
    """Probability that a right answer outscores a wrong one (ties count half); None if one class."""
    score, label = score.ravel(), label.ravel().astype(bool)
    pos, neg = score[label], score[~label]
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks over ties
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def measure(logprob, length, score, correct, picks, fallback, sigma: float) -> dict:
    """U_s, U_v, G (summed and per-token NLL) and the accuracies of solver, verifier and judge."""
    rows = np.arange(len(picks))
    nll, nll_tok = -logprob, -logprob / np.maximum(length, 1)
    u_s, u_v = nll.mean(1).mean(), nll[rows, picks].mean()
    u_s_tok, u_v_tok = nll_tok.mean(1).mean(), nll_tok[rows, picks].mean()
    likelihood_picks = nll_tok.argmin(1)
    return {
        "U_s": float(u_s), "U_v": float(u_v), "G": float(u_s - u_v),
        "U_s_tok": float(u_s_tok), "U_v_tok": float(u_v_tok), "G_tok": float(u_s_tok - u_v_tok),
        "solver_acc": float(correct.mean()),
        "verifier_acc": float(correct[rows, picks].mean()),
        "likelihood_pick_acc": float(correct[rows, likelihood_picks].mean()),
        "judge_auc": roc_auc(score, correct),
        "judge_agreement": float(((score >= sigma) == correct).mean()),
        "fallbacks": int(fallback.sum()),
        "mean_length": float(length.mean()),
    }
