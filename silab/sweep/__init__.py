"""`silab sweep`: cross-improvement experiments (Sun et al., Sec. 5) — one external pool M, spent
on different schedules, against a control arm that spends none.

    for seed in seeds:                                  # one model load per seed
        for arm in none, early, uniform, late:          # each arm its own run folder SWEEP/<arm>-s<seed>
            rounds 0..T, the arm's schedule spending the pool (loop.external_for); a round that an
            earlier arm ran on the same data is copied, not rerun: round 0 never depends on the
            schedule, and late repeats none until round T
    table:  per arm the final test accuracy, U_s, U_v, G (mean ± sd over seeds) and pass@k, round 0 → T
    limits: each run's fitted U_s∞, U_v∞ and accuracy limit, with 95 % intervals over seeds
    theory: the self-improvement dynamics fitted to the none arm, γ fitted per arm against it
            (silab.theory.fit_gamma), the arms' U_s, U_v as compare_schedules predicts them, and
            whether the arms' fitted limits agree (Prop. 5.1, to first order: a homogeneity test
            whose size does not grow with the number of arms) or differ as the schedule-dependent
            dynamics says (β > 0: early data buys more)

Progress goes to stderr, the table to stdout (`--json`: one object); SWEEP/sweep.json keeps it.
Bad input raises UsageError before anything is written.

One concern per module: arms.py (--schedules -> arms and their profiles), run.py (running them),
stats.py (statistics over seeds), fit.py (the theory's view), report.py (verdict, table),
command.py (the command that strings them together).
"""
from silab.sweep.command import main  # noqa: F401
from silab.sweep.report import render  # noqa: F401
