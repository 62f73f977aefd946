"""tokend: a gRPC token service whose signing keys stay in Vault."""
