#!/usr/bin/env python3
"""A TCP proxy that can cut a link the way a network cut does, for the detection benchmark.

While cut (SIGUSR1), requests still reach the server but every reply is dropped: the server
acts, the client never hears. Ending the cut (SIGUSR2) resets every open connection, as the
client's own timeout would after a long cut; later connections pass again. The count of reply
bytes dropped so far is written to STATUS_FILE after each drop.

usage: cut_proxy.py LISTEN_PORT UPSTREAM_PORT STATUS_FILE
"""

import signal
import socket
import sys
import threading

listen_port, upstream_port, status_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
state = {"cut": False, "dropped": 0}
lock = threading.Lock()
sockets = []


def write_status():
    with open(status_file, "w") as out:
        out.write(f"{state['dropped']}\n")


def pump(source, sink, replies):
    try:
        while True:
            data = source.recv(16384)
            if not data:
                break
            if replies and state["cut"]:
                with lock:
                    state["dropped"] += len(data)
                    write_status()
                continue
            sink.sendall(data)
    except OSError:
        pass
    for end in (source, sink):
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def cut(_signum, _frame):
    state["cut"] = True


def restore(_signum, _frame):
    with lock:
        open_now = list(sockets)
        sockets.clear()
    for end in open_now:
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    state["cut"] = False


signal.signal(signal.SIGUSR1, cut)
signal.signal(signal.SIGUSR2, restore)
write_status()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", listen_port))
listener.listen(64)
while True:
    try:
        client, _ = listener.accept()
    except InterruptedError:
        continue
    try:
        server = socket.create_connection(("127.0.0.1", upstream_port))
    except OSError:
        client.close()
        continue
    with lock:
        sockets.extend([client, server])
    threading.Thread(target=pump, args=(client, server, False), daemon=True).start()
    threading.Thread(target=pump, args=(server, client, True), daemon=True).start()
