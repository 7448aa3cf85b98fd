"""The collector: receives records from enrolled devices and stores them for dataset building."""
