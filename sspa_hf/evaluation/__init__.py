"""Evaluation: the classification and selection metrics, and the `evaluate` metric module
(fer_metric/, loaded by path).
"""
