#!/usr/bin/env python3
"""A minimal QMP client for the test bed: qmp-client.py SOCKET 'JSON' ['JSON' ...]

Reads the greeting, then sends each argument as one command and prints every reply (and any
event) as one JSON line on stdout. Exits 0 if the greeting had the QMP shape."""
import json
import socket
import sys

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
stream = sock.makefile("rwb")

def read():
    line = stream.readline()
    if not line:
        raise SystemExit("connection closed")
    return json.loads(line)

greeting = read()
if "QMP" not in greeting:
    raise SystemExit(f"bad greeting: {greeting}")
for command in sys.argv[2:]:
    stream.write(command.encode() + b"\n")
    stream.flush()
    while True:
        reply = read()
        print(json.dumps(reply, sort_keys=True), flush=True)
        if "event" not in reply:
            break
