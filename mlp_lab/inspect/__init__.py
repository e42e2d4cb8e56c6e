"""Looking at data, models and runs: evaluate, predict, handwriting, metric plug-ins, analysis, plots, bench."""
