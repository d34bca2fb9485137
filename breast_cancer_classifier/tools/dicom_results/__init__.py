"""DICOM results of a run: Mammography CAD SR and overlay Secondary Captures (placeholder)."""
