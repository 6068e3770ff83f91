"""Training: the configuration and presets, the devices a run uses, the run loop, and the
run folder it writes (`run_folder`), which every reader of runs goes through.

`digitlab.distributed` builds on this package to train across processes; nothing here
imports it.
"""
