"""Reports: pure functions from results to lines (terminal) or documents (JSON)."""
