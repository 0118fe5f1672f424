# The UDP server of seed 003; port 0 and the real port printed so tests can find it.
import socket

udp_sk = socket.socket(type=socket.SOCK_DGRAM)  # 建立一个服务器的套接字
udp_sk.bind(("127.0.0.1", 0))  # 绑定服务器套接字
print(udp_sk.getsockname()[1], flush=True)
msg, addr = udp_sk.recvfrom(1024)
print(msg, flush=True)
udp_sk.sendto(b"hi", addr)  # 对话(接收与发送)
udp_sk.close()  # 关闭服务器套接字
