# The thread-per-client greet server of seed 001, bound to 127.0.0.1 port 0 instead of
# 1234 (the real port is printed first), with its typo fixed (``s.accept()`` ->
# ``server.accept()``) and the Python capitalisation restored.
import socket
import threading
import time


def session(sock, addr):
    print("歡迎新 %s:%s..." % addr, flush=True)
    sock.send(b"welcome!")
    while True:
        data = sock.recv(1024)
        time.sleep(1)
        # 解碼資料
        if not data or data.decode("utf-8") == "exit":
            break
        sock.send(("hello, %s!" % data.decode("utf-8")).encode("utf-8"))
    sock.close()
    print("來自於 %s:%s 連線被關閉." % addr, flush=True)


server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.bind(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
server.listen(5)
while True:
    sock, addr = server.accept()
    t = threading.Thread(target=session, args=(sock, addr))
    t.start()
