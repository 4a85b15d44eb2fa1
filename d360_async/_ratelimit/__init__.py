"""Rate limiting: header parsing, token-bucket arithmetic, in-process and Redis limiters."""
