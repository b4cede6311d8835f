"""Run infrastructure: workdirs, checkpoints, devices, errors, progress, command-line plumbing."""
