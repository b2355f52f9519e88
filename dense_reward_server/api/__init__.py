"""HTTP layer: app factory, routes, schemas, error mapping, middleware. Knows nothing of vLLM."""
