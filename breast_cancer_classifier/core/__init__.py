"""The pipeline's core: views, file formats, exam lists, checkpoints, the random-number plan,
the four stages and the engine that runs them. Nothing here imports ``tools``."""
