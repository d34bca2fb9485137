"""The four stages of SPEC sections 4-7, each usable on its own: crop, centers, heatmaps,
classifiers (with the stage-4 window code in ``augmentation``)."""
