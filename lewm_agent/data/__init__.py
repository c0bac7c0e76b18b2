"""Rollout files (HDF5), training windows over them, and the scripted-expert collector."""
