"""What the train Job and the finalizer share: errors, MLflow connection and tracking, the DVC dataset."""
