"""The job: one video's run from lock to published result (runner, stop signals)."""
