# A file downloader in the style of the seed programs: connect, send the file
# name with one send() (no newline), then recv() until the server closes and
# write what arrived to a file.  Port, name and output file from the command line.
import socket
import sys

client = socket.socket()
client.connect(("127.0.0.1", int(sys.argv[1])))
client.send(sys.argv[2].encode("utf-8"))  # 要下载的文件名
with open(sys.argv[3], "wb") as f:
    while True:
        data = client.recv(1024)
        if not data:
            break
        f.write(data)
client.close()
