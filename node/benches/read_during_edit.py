"""How long a read waits behind a large edit, on one node: GET
/v1/knowledge in a loop while one PATCH replaces a 40,000-character body
with different random words; five rounds. Not a cargo bench (it drives a
release binary over its control socket, from Python's standard library).

Usage: python3 node/benches/read_during_edit.py target/release/osmoda LABEL
Figures: docs/benchmarks.md, "A read during a large edit"."""
import http.client, json, os, random, socket, statistics, subprocess, sys, tempfile, threading, time

binary, label = sys.argv[1], sys.argv[2]

class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=120)
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

def call(sock, method, path, body=None):
    c = UnixConn(sock)
    data = json.dumps(body) if body is not None else None
    c.request(method, path, body=data, headers={"content-type": "application/json"})
    r = c.getresponse(); out = r.read(); c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {out[:200]!r}")
    return json.loads(out) if out else None

def body(seed):
    rng = random.Random(seed)
    words = []
    n = 0
    while n < 40_000:
        w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        words.append(w); n += len(w) + 1
    return " ".join(words)[:40_000]

data = tempfile.mkdtemp()
env = dict(os.environ, OSMODA_DATA=data, OSMODA_NO_MDNS="true", RUST_LOG="warn")
node = subprocess.Popen([binary, "run", "--listen", "/ip4/127.0.0.1/tcp/0"], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
sock = os.path.join(data, "control.sock")
for _ in range(300):
    if os.path.exists(sock):
        try:
            call(sock, "GET", "/v1/status"); break
        except Exception:
            pass
    time.sleep(0.1)
try:
    # Some entries to list, and the one whose body is replaced.
    for i in range(50):
        call(sock, "POST", "/v1/knowledge", {"title": f"t{i}", "body": "short", "tags": []})
    eid = call(sock, "POST", "/v1/knowledge", {"title": "big", "body": body(0), "tags": []})["id"]
    results = []
    for rnd in range(1, 6):
        lat = []; done = threading.Event()
        def getter():
            while not done.is_set():
                t = time.perf_counter(); call(sock, "GET", "/v1/knowledge?limit=20")
                lat.append(time.perf_counter() - t)
        th = threading.Thread(target=getter); th.start()
        time.sleep(0.05)
        t = time.perf_counter(); call(sock, "PATCH", f"/v1/knowledge/{eid}", {"body": body(rnd)})
        patch = time.perf_counter() - t
        done.set(); th.join()
        results.append((patch, max(lat), statistics.median(lat), len(lat)))
        print(f"{label} round {rnd}: PATCH {patch*1000:.0f} ms; {len(lat)} GETs meanwhile, median {statistics.median(lat)*1000:.1f} ms, max {max(lat)*1000:.0f} ms", flush=True)
    print(f"{label} medians over rounds: PATCH {statistics.median(r[0] for r in results)*1000:.0f} ms, "
          f"longest GET {statistics.median(r[1] for r in results)*1000:.0f} ms, "
          f"GETs served during the PATCH {statistics.median(r[3] for r in results):.0f}")
finally:
    node.terminate(); node.wait()
