"""Drives one sockproxy run for benches/instructions: a backend, the client of one mode.

    python3 benches/instructions.py backend PORTFILE
        serves on a free loopback port (written to PORTFILE): a websocket upgrade gets a
        101 and every 32-byte binary frame back; anything else a 200 "ok", the same head
        nginx's `return 200 "ok"` sends.
    python3 benches/instructions.py client MODE N BACKEND WRAPPER... -- BIN
        starts `WRAPPER... BIN run ...` (valgrind or strace), waits for its `listening`
        record, does N units of MODE, stops it with SIGINT and checks that every unit got
        its record.
    python3 benches/instructions.py client MODE N BACKEND WRAPPER... -- nginx|haproxy
        the same with a peer in sockproxy's place, configured as in the load bench
        (benches/load/contender.rs: upstream keep-alive, a JSON access log of the same
        headers) but as one process (nginx `master_process off`) writing its log to a file.

MODE is one of
    keepalive   polling GETs, 4 keep-alive connections taking turns
    newconn     one polling GET per new connection, closed by the client after the answer
    handshake   one websocket upgrade per new connection, closed right after the 101
    rtt         one websocket, N round trips of a 32-byte binary message

The request carries the headers a browser behind the GKE load balancer sends, as the
load bench's do. Every step waits for the bytes it needs; only a peer's start is polled
(its port accepting), since it has no record to say it listens.
"""

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HEADERS = (
    b"Host: ide.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120\r\n"
    b"Origin: https://ide.example.com\r\nX-Forwarded-For: 10.0.0.1, 35.191.0.1\r\n"
    b"X-Forwarded-Proto: https\r\nCookie: io=abcdefghijklmnopqrst; session=secret\r\n"
)
POLL = (
    b"GET /socket.io/?EIO=4&transport=polling&t=PXy1&sid=abcdefghijklmnopqrst HTTP/1.1\r\n"
    + HEADERS
    + b"\r\n"
)
UPGRADE = (
    b"GET /socket.io/?EIO=4&transport=websocket&sid=abcdefghijklmnopqrst HTTP/1.1\r\n"
    + HEADERS
    + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
OK = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 12:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
)
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)
PAYLOAD = b"x" * 32
# A client frame: FIN + binary, masked, 32 bytes, mask 0 (so the payload is as sent).
FRAME = bytes([0x82, 0x80 | 32, 0, 0, 0, 0]) + PAYLOAD
# The server's answer: FIN + binary, unmasked, 32 bytes.
ECHO = bytes([0x82, 32]) + PAYLOAD


def backend(portfile):
    """Single-threaded, selector-driven: enough for a proxy slowed down by valgrind."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    lsock.setblocking(False)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(lsock.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    state = {}  # socket -> [buffer, upgraded]
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is lsock:
                c, _ = lsock.accept()
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(c, selectors.EVENT_READ, None)
                state[c] = [b"", False]
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                del state[s]
                s.close()
                continue
            st = state[s]
            st[0] += data
            serve(s, st)


def serve(s, st):
    """Answers every complete request or frame in the connection's buffer."""
    while True:
        if st[1]:
            if len(st[0]) < len(FRAME):
                return
            st[0] = st[0][len(FRAME):]
            s.sendall(ECHO)
            continue
        end = st[0].find(b"\r\n\r\n")
        if end < 0:
            return
        head, st[0] = st[0][:end], st[0][end + 4:]
        if b"\nupgrade: websocket" in head.lower():
            s.sendall(SWITCH)
            st[1] = True
        else:
            s.sendall(OK)


def read_until(s, have, done):
    while not done(have):
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("instructions: the proxy closed a connection")
        have += chunk
    return have


def head_and(body):
    return lambda got: got.endswith(b"\r\n\r\n" + body)


def run_mode(mode, n, host, port):
    addr = (host, port)
    if mode == "keepalive":
        conns = [socket.create_connection(addr) for _ in range(4)]
        for i in range(n):
            s = conns[i % 4]
            s.sendall(POLL)
            read_until(s, b"", head_and(b"ok"))
        for s in conns:
            s.close()
    elif mode == "newconn":
        for _ in range(n):
            s = socket.create_connection(addr)
            s.sendall(POLL)
            read_until(s, b"", head_and(b"ok"))
            s.close()
    elif mode == "handshake":
        for _ in range(n):
            s = socket.create_connection(addr)
            s.sendall(UPGRADE)
            read_until(s, b"", head_and(b""))
            s.close()
    elif mode == "rtt":
        s = socket.create_connection(addr)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(UPGRADE)
        rest = read_until(s, b"", lambda g: b"\r\n\r\n" in g)
        rest = rest[rest.index(b"\r\n\r\n") + 4:]
        for _ in range(n):
            s.sendall(FRAME)
            rest = read_until(s, rest, lambda g: len(g) >= len(ECHO))[len(ECHO):]
        s.close()
    else:
        sys.exit(f"instructions: unknown mode {mode}")


def expected(mode, n):
    """(request/upgrade records, tunnel_closed records) the run owes."""
    return {
        "keepalive": (n, 0),
        "newconn": (n, 0),
        "handshake": (n, n),
        "rtt": (1, 1),
    }[mode]


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  log_format sio escape=json '{{"time":"$time_iso8601","client":"$remote_addr:$remote_port",'
    '"method":"$request_method","uri":"$request_uri","status":$status,'
    '"request_time":$request_time,"bytes_in":$request_length,"bytes_out":$bytes_sent,'
    '"upgrade":"$http_upgrade","connection":"$http_connection","host":"$http_host",'
    '"origin":"$http_origin","x_forwarded_for":"$http_x_forwarded_for",'
    '"x_forwarded_proto":"$http_x_forwarded_proto","cookie":"$http_cookie",'
    '"user_agent":"$http_user_agent","sec_websocket_key":"$http_sec_websocket_key",'
    '"upstream_status":"$upstream_status","upstream_time":"$upstream_response_time"}}';
  access_log {d}/access.log sio buffer=64k flush=1s;
  keepalive_requests 1000000;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream theia {{ server {backend}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://theia;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 3600s;
    }}
  }}
}}
"""

HAPROXY_CONF = """
global
  nbthread 1
  maxconn 4096
  log stdout format raw local0
defaults
  mode http
  log global
  option dontlognull
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 3600s
  timeout server 3600s
  timeout tunnel 3600s
frontend sio
  bind 127.0.0.1:{port}
{captures}  log-format '{{"time":"%t","client":"%ci:%cp","method":"%HM","uri":"%[capture.req.uri,json(utf8s)]","status":%ST,"request_time_ms":%Ta,"bytes_in":%U,"bytes_out":%B{fields}}}'
  option forwardfor
  default_backend theia
backend theia
  server theia {backend}
"""

HAPROXY_HEADERS = ["upgrade", "connection", "host", "origin", "x-forwarded-for",
                   "x-forwarded-proto", "cookie", "user-agent", "sec-websocket-key"]


def start_peer(kind, wrapper, backend_addr):
    """Starts nginx or haproxy under `wrapper` on a free port: (process, port, its dir)."""
    d = tempfile.mkdtemp(prefix="instructions-")
    os.makedirs(f"{d}/tmp")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    if kind == "nginx":
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(d=d, port=port, backend=backend_addr))
        cmd = ["nginx", "-p", d, "-c", f"{d}/nginx.conf", "-e", f"{d}/nginx-error.log"]
        out = subprocess.DEVNULL
    else:
        captures = "".join(f"  http-request capture req.fhdr({h}) len 512\n"
                           for h in HAPROXY_HEADERS)
        fields = "".join(f',"{h.replace("-", "_")}":"%[capture.req.hdr({i}),json(utf8s)]"'
                         for i, h in enumerate(HAPROXY_HEADERS))
        with open(f"{d}/haproxy.cfg", "w") as f:
            f.write(HAPROXY_CONF.format(port=port, backend=backend_addr,
                                        captures=captures, fields=fields))
        cmd = ["haproxy", "-db", "-f", f"{d}/haproxy.cfg"]
        out = open(f"{d}/access.log", "w")
    proc = subprocess.Popen(wrapper + cmd, stdout=out)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return proc, port, d
        except ConnectionRefusedError:
            if proc.poll() is not None:
                sys.exit(f"instructions: {kind} did not start ({d})")
            time.sleep(0.05)


def stop(proc, sig):
    """Sends `sig` to the proxy itself (strace runs it as its child) and waits."""
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            tracees = [int(p) for p in f.read().split()]
    except OSError:
        tracees = []
    for pid in tracees or [proc.pid]:
        os.kill(pid, sig)


def peer(mode, n, backend_addr, wrapper, kind):
    proc, port, d = start_peer(kind, wrapper, backend_addr)
    run_mode(mode, n, "127.0.0.1", port)
    stop(proc, signal.SIGQUIT if kind == "nginx" else signal.SIGUSR1)
    proc.wait()
    shutil.rmtree(d, ignore_errors=True)


def client(mode, n, backend_addr, argv):
    split = argv.index("--")
    wrapper, binary = argv[:split], argv[split + 1]
    if binary in ("nginx", "haproxy"):
        return peer(mode, n, backend_addr, wrapper, binary)
    proxy = subprocess.Popen(
        wrapper
        + [binary, "run", "--listen", "127.0.0.1:0", "--upstream", backend_addr,
           "--admin", "off", "--workers", "1"],
        stdout=subprocess.PIPE, text=True)
    first = json.loads(proxy.stdout.readline() or '{"event": "none"}')
    if first.get("event") != "listening":
        proxy.kill()
        sys.exit(f"instructions: {binary} did not start; see the wrapper's log")
    host, port = first["listen"].rsplit(":", 1)
    run_mode(mode, n, host, int(port))
    stop(proxy, signal.SIGINT)
    out = proxy.stdout.read()
    proxy.wait()
    got = (out.count('"event":"request"') + out.count('"event":"upgrade"'),
           out.count('"event":"tunnel_closed"'))
    if got != expected(mode, n):
        sys.exit(f"instructions: records {got} for {mode} x {n}, expected {expected(mode, n)}")


if __name__ == "__main__":
    if sys.argv[1] == "backend":
        backend(sys.argv[2])
    else:
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
