"""Sans-I/O memcached protocol: bytes in, request objects out, responses to bytes.

No sockets, no storage, no clocks: everything here is a pure function of its input.
"""
