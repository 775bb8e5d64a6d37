"""Memory under a burst of sign-ups (a benchmark, not a test): starts the release orderly-local
with the production argon2 cost, sends 100 sign-ups at once, and prints the answers and the
server's resident memory before, at its peak and 2 s after. Run after `cargo build --release -p
orderly-local`: python3 scripts/signup_memory.py"""
import json, os, socket, subprocess, sys, threading, time, urllib.error, urllib.request, tempfile
from concurrent.futures import ThreadPoolExecutor
def free_port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
port=free_port(); data=tempfile.mkdtemp()
env=dict(os.environ, ORDERLY_ADDR=f"127.0.0.1:{port}", ORDERLY_DATA_DIR=data, SIGN_UPS_PER_ADDRESS="100000", RUST_LOG="warn")
binary=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "orderly-local")
p=subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1])//1024
for _ in range(100):
    try: socket.create_connection(("127.0.0.1",port)).close(); break
    except OSError: time.sleep(0.1)
time.sleep(0.5)
before=rss(); peak=[before]; stop=False
def sample():
    while not stop: peak[0]=max(peak[0],rss()); time.sleep(0.02)
t=threading.Thread(target=sample); t.start()
def signup(i):
    body=json.dumps({"name":"M","email":f"m{i}@example.com","password":"memory-check-pw"}).encode()
    req=urllib.request.Request(f"http://127.0.0.1:{port}/customers",data=body,headers={"content-type":"application/json"})
    try: return urllib.request.urlopen(req,timeout=60).status
    except urllib.error.HTTPError as e: return e.code
start=time.time()
with ThreadPoolExecutor(100) as ex: statuses=list(ex.map(signup, range(100)))
took=time.time()-start
time.sleep(2); stop=True; t.join(); after=rss()
from collections import Counter
print(f"100 concurrent sign-ups (argon2id 19 MiB, 2 passes): {dict(Counter(statuses))} in {took:.1f} s; RSS before {before} MB, peak {peak[0]} MB, 2 s after {after} MB")
p.terminate(); p.wait()
