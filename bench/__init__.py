"""Benchmark harness for infrarust: ``python -m bench.setup`` then ``python -m bench`` (``make bench``)."""
