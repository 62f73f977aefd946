"""HTTP: JWKS, discovery, health, metrics."""
