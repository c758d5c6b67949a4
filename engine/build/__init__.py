"""Training sets from hard negatives (`quarry build`)."""
