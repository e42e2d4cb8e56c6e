"""Running runs: the one procedure that runs a run (one lock, one failure policy) and the executors that run many, in local processes or on Ray."""
