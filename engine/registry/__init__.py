"""MLflow models: Quarry's models logged, registered and loaded back (`models:/<name>@<alias>`)."""
