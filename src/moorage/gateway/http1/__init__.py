"""A lean HTTP/1.1 reverse proxy on raw asyncio protocols (uvloop + httptools).

Bytes move from socket to socket in protocol callbacks, with no task per
request on the common path (a pooled connection to a replica with room);
coroutines are used only where waiting is the point: queueing for a replica,
opening a connection.
"""
