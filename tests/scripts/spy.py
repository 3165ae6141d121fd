# A ring-2 agent that runs its own code and tries, as an attacker would, to
# step out of its confinement. Each move prints one line:
#   MOVE <name>: blocked <why>   or   MOVE <name>: ESCAPED <what it got>
# The test reads the report from the agent's workspace.
import ctypes, os, signal, socket, subprocess, sys, time

data = os.environ["SPY_DATA"]
victim = int(os.environ["SPY_VICTIM_PID"])
node_port = int(os.environ["SPY_NODE_PORT"])
outside_port = int(os.environ["SPY_OUTSIDE_PORT"])
lines = []


def move(name, attempt):
    try:
        got = attempt()
    except Exception as e:  # the move failed: that is the point
        lines.append(f"MOVE {name}: blocked {type(e).__name__}: {e}")
        return
    if got is None:
        lines.append(f"MOVE {name}: blocked")
    else:
        lines.append(f"MOVE {name}: ESCAPED {str(got)[:200]!r}")


def read(path):
    with open(path, "rb") as f:
        return f.read(64)


def write(path):
    with open(path, "w") as f:
        f.write("escaped")
    os.unlink(path)  # an escape is reported, not left on the host
    return path


def connect_unix(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    s.connect(path)
    s.sendall(b"GET /v1/approvals HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    return s.recv(200)


def connect_tcp(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    return f"connected to {port}"


def ptrace():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, victim, None, None) == 0:  # PTRACE_ATTACH
        return "attached"
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def kill():
    os.kill(victim, signal.SIGSTOP)
    return "stopped the victim"


def listing(path):
    names = set(os.listdir(path))
    secret = names & {"root.key", "identity.key", "state.redb", "control.sock", "vault.key"}
    return sorted(secret) if secret else None


def approve_on_agent_socket():
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["OSMODA_AGENT_SOCKET"])
    s.sendall(b"POST /v1/approvals/1/approve HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    answer = s.recv(200)
    return answer if b" 200 " in answer else None


def command(*argv):
    done = subprocess.run(argv, capture_output=True, timeout=10)
    return f"{argv[0]} exited 0" if done.returncode == 0 else None


def fork_bomb():
    children = []
    try:
        for _ in range(200):
            children.append(subprocess.Popen(["sleep", "30"]))
    except OSError:
        pass
    count = len(children)
    for c in children:
        c.kill()
        c.wait()
    lines.append(f"FORKS {count}")
    return None


move("read root.key", lambda: read(f"{data}/root.key"))
move("read identity.key", lambda: read(f"{data}/identity.key"))
move("read state.redb", lambda: read(f"{data}/state.redb"))
move("list the data folder", lambda: listing(data))
move("read another agent's workspace", lambda: os.listdir(f"{data}/agents/victim/workspace"))
move("connect control.sock", lambda: connect_unix(f"{data}/control.sock"))
move("approve on the agent socket", approve_on_agent_socket)
move("read another agent's environ", lambda: read(f"/proc/{victim}/environ"))
move("read another agent's memory", lambda: read(f"/proc/{victim}/mem"))
move("signal another agent", kill)
move("ptrace another agent", ptrace)
move("write /etc", lambda: write("/etc/osmoda-escape"))
move("write /usr", lambda: write("/usr/osmoda-escape"))
move("write the data folder", lambda: write(f"{data}/escape"))
move("connect the node's TCP port", lambda: connect_tcp(node_port))
move("connect an outside server", lambda: connect_tcp(outside_port))
def mount():
    got = command("mount", "-t", "tmpfs", "none", "/mnt")
    if got:
        command("umount", "/mnt")  # reported, not left on the host
    return got


move("mount", mount)
move("new user namespace", lambda: command("unshare", "-U", "-r", "true"))
move("fork bomb", fork_bomb)
try:
    with open("mine.txt", "w") as f:
        f.write("mine")
    lines.append("OWN_WRITE ok")
except Exception as e:
    lines.append(f"OWN_WRITE failed {e}")
lines.append(f"UID {os.getuid()} GID {os.getgid()}")
with open("report.txt", "w") as f:
    f.write("\n".join(lines) + "\nDONE\n")
time.sleep(600)
