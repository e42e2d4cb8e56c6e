"""Studies: plans of arms x seeds, compare, their reports, the overview, the suite, the catalog."""
