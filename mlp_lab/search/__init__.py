"""Hyperparameter search on Optuna: search files (`spec`), the study in a journal file shared by
every trial's process (`study`), the ask/tell driver that runs trials as ordinary runs through
an executor (`driver`), the report (`report`) and the confirmation over seeds (`confirm`).

Callers import the submodule they need; this package re-exports nothing, so importing it costs
nothing (optuna, the optional ``[search]`` extra, is imported only inside functions).
"""
