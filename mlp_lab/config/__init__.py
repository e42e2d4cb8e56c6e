"""What a run and a study are, as data: the run config's schema, --set, the hash that decides "same run", study and search files, dataset facts, metric names and metric plug-ins. No torch."""
