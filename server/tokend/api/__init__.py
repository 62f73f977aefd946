"""gRPC servicer and what surrounds it."""
