"""What the HTTP providers share: one session per backend (same-origin redirects,
cancellable requests), bounded reads, one Secret, one Retry-After reader, the
checks run when a provider is built, the SSE feed, and the mapping of failures
below HTTP."""
