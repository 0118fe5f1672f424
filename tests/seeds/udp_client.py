# The UDP client of seed 003; port from the command line.
import socket
import sys

ip_port = ("127.0.0.1", int(sys.argv[1]))
udp_sk = socket.socket(type=socket.SOCK_DGRAM)
udp_sk.settimeout(10)
udp_sk.sendto(b"hello", ip_port)
back_msg, addr = udp_sk.recvfrom(1024)
print(back_msg.decode("utf-8"), addr)
