"""HTTP pieces shared by the MLflow API and the native API."""
