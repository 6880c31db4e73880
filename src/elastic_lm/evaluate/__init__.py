"""Evaluation of chosen models; ``elastic_lm.evaluate.downstream`` fine-tunes and scores exports."""
