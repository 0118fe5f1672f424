# The greet client of seed 001, with its typos fixed (``s`` -> ``client``);
# the port comes from the command line so tests can use port 0.
import socket
import sys

client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# 建立连接:
client.connect(("127.0.0.1", int(sys.argv[1])))
# 接收欢迎消息:
print(client.recv(1024).decode("utf-8"))
for data in [b"rose", b"think", b"babala"]:
    # 发送数据:
    client.send(data)
    print(client.recv(1024).decode("utf-8"))
client.send(b"exit")
client.close()
