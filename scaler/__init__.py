"""prewarm: predictive KEDA external scaler for LLM inference."""
