"""Everything around the pipeline: DICOM in, exam lists from PNGs, pictures, evaluation,
downloads, demo weights, synthetic phantoms and the published reference figures."""
