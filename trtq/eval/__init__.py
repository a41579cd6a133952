"""Evaluation: box-prompted mask IoU against ground truth and agreement between runs."""
