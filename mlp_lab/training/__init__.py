"""One seeded run's training: the trainer's loop, its step engines, optimizers, schedules, checkpoints, runtime switches, metric loggers."""
