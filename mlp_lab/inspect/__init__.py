"""Looking at data, models and runs: evaluate, predict, handwriting, analysis, plots, bench."""
