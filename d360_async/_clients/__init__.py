"""Layer 5, the clients: [Client][d360_async.Client] puts a transport, a limiter, the resources
and the watch together.

What it may import: every layer below (`_watch`, `_resources`, `_transport`, `_limiters`,
`_core`). Only the edges (`cli`, `contrib`, `testing`) and the public modules sit above it.
"""
