"""The relay: deliveries of `relay = true` destinations go to clients that ask for them (the
pull API, `hookyard listen`) instead of being posted by the worker. A client leases deliveries,
sends each to its own receiver, and reports each result; the result is recorded as the attempt
and the destination's retry policy applies, exactly as for a direct delivery."""
