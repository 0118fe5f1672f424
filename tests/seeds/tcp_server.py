# The single-exchange TCP server of seed 003, with the SO_REUSEADDR fix; port 0 and
# the real port printed so tests can find it.
import socket
from socket import SO_REUSEADDR, SOL_SOCKET

sk = socket.socket()
sk.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
sk.bind(("127.0.0.1", 0))
sk.listen()
print(sk.getsockname()[1], flush=True)
conn, addr = sk.accept()
ret = conn.recv(1024)
print(ret, flush=True)
conn.send(b"hi")
conn.close()
sk.close()
