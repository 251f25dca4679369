"""Training: the arguments, SSPATrainer and its callback, sample selection, pairing, global batches,
synchronised BatchNorm, and `build_model`.
"""
