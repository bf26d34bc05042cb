"""LIVE's pristine NIQE model (niqe_pris_params.npz) and its notice (README.md): package data."""
