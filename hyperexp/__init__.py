"""hyperexp: decode perceived faces from fMRI."""
