# The TCP client of seed 004 (it asks for ip, port and data on stdin and speaks gbk),
# with its missing ``recv_data = tcp_client.recv(1024)`` line restored.
import socket


def main():
    tcp_client = socket.socket(family=socket.AF_INET, type=socket.SOCK_STREAM)
    server_ip = input("server_ip:")
    server_port = int(input("server_port:"))
    tcp_client.connect((server_ip, server_port))
    send_data = input("发送的数据:")
    tcp_client.send(send_data.encode("gbk"))
    recv_data = tcp_client.recv(1024)
    print(recv_data.decode("gbk"))
    tcp_client.close()


if __name__ == "__main__":
    main()
