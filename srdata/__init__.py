"""Raw tiles or released patches -> one Zarr store (OME-NGFF + ROI index) -> streaming loader."""
