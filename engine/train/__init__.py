"""Training: the user's base detector (Ultralytics' own trainer) and, later, Ray Train fine-tuning."""
