"""Run directories and the one procedure that runs a run, locally or on Ray."""
