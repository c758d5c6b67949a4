"""The whole loop on the synthetic world (`quarry demo`)."""
