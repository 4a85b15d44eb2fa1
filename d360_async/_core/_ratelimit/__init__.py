"""The rate limiter's pure half: header dialects into a state, the policy estimator, the budget.

`_headers` reads every rate-limit dialect into a [RateLimitState][d360_async.RateLimitState];
`_policy` learns the server's policy from a stream of them; `_budget` admits requests against
it; `_ledger` shares one budget between processes through an ordered log; `_protocol` is the
[RateLimiter][d360_async.RateLimiter] protocol the I/O limiters in `d360_async._limiters`
implement. Pure: time is passed in.
"""
