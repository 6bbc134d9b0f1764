"""Run folders on disk: the one place engine output lives."""
from silab.runs.store import RunDir, expand_runs, is_run, read_jsonl, read_records, run_labels

__all__ = ["RunDir", "expand_runs", "is_run", "read_jsonl", "read_records", "run_labels"]
