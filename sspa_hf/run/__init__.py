"""The run folder: the name of every file a run writes, its reports, checkpoints, the output-folder guard,
the model card and the figures.
"""
