"""Run folders on disk: the one place engine output lives."""
from silab.runs.store import RunDir, is_run, read_jsonl, read_records

__all__ = ["RunDir", "is_run", "read_jsonl", "read_records"]
