"""Measuring the models on the evaluation set: the quality report and the evaluate command."""
