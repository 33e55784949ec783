"""A CouchDB 3 cluster behind a load balancer, as production runs it: three nodes of the shared `couchdb3` script
(`cluster`: n = 3 copies, q = 2 shards) and Debian's haproxy in front, round-robin over the nodes with a health
check on `/_up`, as docs/deploy.md (section 7) deploys it. The tests of tests/test_cluster.py use it; it runs in the
suite's CouchDB pass only (COUCHDB_TEST_URL and the script at hand), with haproxy installed (`make test` installs it
there)."""

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.waiting import wait_for
from tokens.couch import split_credentials

# The load balancer's settings (docs/deploy.md, section 7): a node that fails its health check twice, a second
# apart, gets no new requests until it answers again; a request whose connection fails is sent to another node.
HAPROXY_CFG = """\
global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 300s
    timeout server 300s
    option redispatch
    retries 2
frontend couchdb
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /_up
    http-check expect status 200
    default-server inter 1s fall 2 rise 1
{servers}
"""


def usable():
    """Why the cluster tests cannot run here, or "" when they can."""
    from tests.conftest import couchdb3_script

    if not (os.environ.get("COUCHDB_TEST_URL") and couchdb3_script()):
        return "the cluster tests run in the suite's CouchDB 3 pass (COUCHDB_TEST_URL and the couchdb3 script)"
    if not shutil.which("haproxy"):
        return "haproxy is not installed (make test installs it with apt where it can)"
    return ""


def free_ports(count):
    """The first of `count` consecutive ports that are free now (the script takes 2 per node from its base), below
    the range the system hands out for outgoing connections: a port there can be taken by any client (haproxy's
    own health checks, say) while a node is down, and the node could not start again on it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) \
        if Path("/proc/sys/net/ipv4/ip_local_port_range").exists() else 32768
    for _ in range(200):
        base = random.randrange(10_000, low - count)
        if all(_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError("no run of free ports")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class CouchCluster:
    """Three CouchDB nodes and the load balancer in front; `url`, `username`, `password` are the balancer's, as a
    site's and a pilot's settings name it (the same interface as the suite's other servers)."""

    nodes = 3

    def __init__(self, workdir, script):
        self.workdir, self.script = Path(workdir), script
        self.url, self.username, self.password = "", "admin", "admin"
        self.node_urls, self.haproxy = [], None

    def _run(self, *args):
        out = subprocess.run([self.script, *args], capture_output=True, text=True,
                             env=dict(os.environ, COUCHDB3_LOCKOUT="off"))
        assert out.returncode == 0, f"couchdb3 {' '.join(args)}: {out.stderr[:1500]}"
        return out.stdout.strip().splitlines()

    def start(self):
        self.base = base = free_ports(2 * self.nodes + 1)
        self._run("cluster", str(self.workdir / "nodes"), str(base), str(self.nodes))
        self.node_urls = [split_credentials(u)[0] for u in self._run("cluster-urls", str(self.workdir / "nodes"))]
        port = base + 2 * self.nodes
        servers = "\n".join(f"    server n{i + 1} {u.split('//', 1)[1]} check" for i, u in enumerate(self.node_urls))
        config = self.workdir / "haproxy.cfg"
        config.write_text(HAPROXY_CFG.format(port=port, servers=servers))
        self.log = open(self.workdir / "haproxy.log", "w")  # noqa: SIM115 (open while haproxy runs)
        self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=self.log, stderr=self.log)
        self.url = f"http://127.0.0.1:{port}"
        wait_for(self.answers, what="the load balancer in front of the cluster")
        return self

    def answers(self):
        import requests

        try:
            return requests.get(f"{self.url}/_up", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop_node(self, i):
        """Node i (1-based) goes down as a machine does: its connections break. Its processes are found by the
        vm.args they run with (the script's pid file does not always name the node's own process: a node it could
        not stop then held its ports, and started again it could not bind them)."""
        pids = self._pids(i)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30  # as the script: TERM, then KILL what is left after 30 s
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in [p for p in pids if _alive(p)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(_alive(p) for p in pids), what=f"node {i} gone")
        (self.workdir / "nodes" / f"node{i}" / "couchdb.pid").unlink(missing_ok=True)

    def _pids(self, i):
        marker = f"COUCHDB_ARGS_FILE={self.workdir / 'nodes' / f'node{i}' / 'vm.args'}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
                command = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            # epmd, which the first node started, inherited its environment: it serves every Erlang node here
            if marker in environ and b"epmd" not in command:
                found.append(int(proc.name))
        return found

    def start_node(self, i):
        """Node i back; the script returns once it has rejoined and holds the writes made meanwhile. The script
        sometimes loses track of the node it launched (its pid file names a process that has already handed over)
        and says it exited while it starts: then the node's own answer decides."""
        try:
            self._run("node-start", str(self.workdir / "nodes"), str(i))
        except AssertionError as e:
            if "exited" not in str(e):
                raise
            wait_for(lambda: self._pids(i) and self.node_up(i), what=f"node {i} answering after a restart")

    def node_up(self, i):
        """Node i answers and knows every other node that runs."""
        import requests

        try:
            members = requests.get(f"{self.node_urls[i - 1]}/_membership", auth=(self.username, self.password),
                                   timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        running = [j for j in range(1, self.nodes + 1) if self._pids(j)]
        names = set(members.get("cluster_nodes", [])) & set(members.get("all_nodes", []))
        return all(f"node{j}-{self.base}@127.0.0.1" in names for j in running)

    def stop_all(self):
        """Every node down (a cluster's machines losing power)."""
        for i in range(1, self.nodes + 1):
            self.stop_node(i)

    def start_all(self):
        """The stopped nodes started again, one after another (each joins the ones already back)."""
        for i in range(1, self.nodes + 1):
            if not self._pids(i):
                self.start_node(i)
        wait_for(lambda: all(self.node_up(i) for i in range(1, self.nodes + 1)), what="every node up and joined")
        wait_for(self.answers, what="the cluster answering through the load balancer again")

    def stop(self):
        if self.haproxy is not None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
        self.stop_all()
        self.log.close()
