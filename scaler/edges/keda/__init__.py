"""The KEDA edge: the ExternalScaler gRPC contract (servicer) and its server (health, TLS)."""
