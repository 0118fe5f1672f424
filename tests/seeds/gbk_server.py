# The TCP server of seed 004 (it speaks gbk and asks for its reply on stdin), bound to
# 127.0.0.1 port 0 instead of a LAN address, with the real port printed.
import socket


def main():
    tcp_server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp_server.bind(("127.0.0.1", 0))
    print(tcp_server.getsockname()[1], flush=True)
    tcp_server.listen(128)
    new_client_socket, client_addr = tcp_server.accept()
    recv_data = new_client_socket.recv(1024)
    print(recv_data.decode("gbk"), flush=True)
    send_data = input("请输入你要发送给client的信息:")
    new_client_socket.send(send_data.encode("gbk"))


if __name__ == "__main__":
    main()
