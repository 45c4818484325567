"""`aps bench ...`: benchmarks that print figures, the load generator they use, and the local
processes they start on 127.0.0.1 (`aps serve`, vLLM, the LiteLLM proxy, redis-server)."""
