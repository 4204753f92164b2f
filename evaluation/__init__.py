"""Evaluation: IR and ragas metrics, golden-set runs, reports. Never imported by the serving path."""
