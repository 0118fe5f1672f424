# The TCP client of seed 000, with its typo fixed
# (``client.connect = (...)`` -> ``client.connect(...)``); port from the command line.
import socket
import sys

client = socket.socket()
server_ip_port = ("127.0.0.1", int(sys.argv[1]))
client.connect(server_ip_port)  # 连接服务器端
client.send("我用python".encode("utf-8"))  # 发送消息
from_server_msg = client.recv(1024)
from_server_msg = from_server_msg.decode("utf-8")
print(from_server_msg)
client.close()
