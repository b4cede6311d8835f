"""Scoring: the published metrics, evaluation of a run, reports and figures."""
