#!/usr/bin/env python3
"""By-hand twins with the target's user and system CPU apart (a measuring aid, not part of CI).

    python3 scripts/twinsplit.py BIN TWIN TRACER ROUNDS SECONDS [bench args...]

Runs BIN and TWIN (a copy of BIN, so that no probe placed in one traps the other) with the
given `testdata/go/bench` arguments and `-tick 100ms`. Each round runs `TRACER --pid P` on one
twin (roles alternate), waits for a line with "attached" on its stdout and 4 s, measures
SECONDS, stops it with SIGINT, waits 2 s and measures SECONDS untraced. Per phase and twin:
operations (the ticks), user and system CPU and minor faults (/proc/PID/stat). Prints each
round as JSON, then the medians of the traced twin's figures per operation against its
twin's, traced phase over untraced phase. TRACER may be a wrapper that adds options.
docs/benchmarks.md part 1h ("permaps1000 by hand") has what it measured."""
import subprocess, sys, threading, time, os, signal, statistics, json
if len(sys.argv) < 6:
    sys.exit(__doc__)
BIN, TWIN, TRACER, ROUNDS, SECS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
ARGS = sys.argv[6:]
HZ = os.sysconf('SC_CLK_TCK')
procs, ticks = [], [[], []]
def reader(i, p):
    for line in p.stdout:
        f = line.split()
        if len(f) >= 3 and f[0] == 'tick':
            ticks[i].append((int(f[1]) / 1e9, int(f[2])))
for i, b in enumerate((BIN, TWIN)):
    p = subprocess.Popen([b] + ARGS + ['-seconds', '100000', '-tick', '100ms'], stdout=subprocess.PIPE, text=True)
    procs.append(p)
    threading.Thread(target=reader, args=(i, p), daemon=True).start()
def stat(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return int(f[7]), int(f[11]) / HZ, int(f[12]) / HZ  # minflt, utime, stime (fields 10, 14, 15)
def snap():
    return time.time(), [stat(p.pid) for p in procs]
def ops(i, t0, t1):
    return sum(n for t, n in ticks[i] if t0 < t <= t1)
def phase(a, b):
    out = []
    for i in range(2):
        o = ops(i, a[0], b[0])
        out.append(dict(ops=o, flt=b[1][i][0]-a[1][i][0], ut=b[1][i][1]-a[1][i][1], st=b[1][i][2]-a[1][i][2]))
    return out
rows = []
try:
    time.sleep(5)
    for r in range(ROUNDS):
        t = r % 2
        tr = subprocess.Popen([TRACER, '--pid', str(procs[t].pid)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in tr.stdout:
            if 'attached' in line: break
        threading.Thread(target=lambda: [None for _ in tr.stdout], daemon=True).start()
        time.sleep(4)
        tcpu0 = sum(int(x) for x in open(f'/proc/{tr.pid}/stat').read().rsplit(')',1)[1].split()[11:13]) / HZ
        a = snap(); time.sleep(SECS); b = snap()
        tcpu1 = sum(int(x) for x in open(f'/proc/{tr.pid}/stat').read().rsplit(')',1)[1].split()[11:13]) / HZ
        tr.send_signal(signal.SIGINT); tr.wait(timeout=60)
        time.sleep(2)
        c = snap(); time.sleep(SECS); d = snap()
        rows.append(dict(round=r, traced=t, tracer_cpu=tcpu1-tcpu0, tp=phase(a, b), up=phase(c, d)))
        print(json.dumps(rows[-1]), flush=True)
finally:
    for p in procs: p.kill()
def rel(ph, t, key):  # traced twin's key per op over the other twin's
    x, y = ph[t], ph[1-t]
    return (x[key]/x['ops']) / (y[key]/y['ops'])
print('--- medians over rounds: traced phase / untraced phase (traced twin vs its twin), relative change')
for key in ('ut', 'st', 'flt'):
    v = [rel(r['tp'], r['traced'], key) / rel(r['up'], r['traced'], key) - 1 for r in rows]
    print(key, 'per op: median %+.2f%%' % (100*statistics.median(v)), ' '.join('%+.1f' % (100*x) for x in v))
v = [((r['tp'][r['traced']]['ut']+r['tp'][r['traced']]['st'])/r['tp'][r['traced']]['ops']) / ((r['tp'][1-r['traced']]['ut']+r['tp'][1-r['traced']]['st'])/r['tp'][1-r['traced']]['ops'])
     / (((r['up'][r['traced']]['ut']+r['up'][r['traced']]['st'])/r['up'][r['traced']]['ops']) / ((r['up'][1-r['traced']]['ut']+r['up'][1-r['traced']]['st'])/r['up'][1-r['traced']]['ops'])) - 1 for r in rows]
print('cpu per op: median %+.2f%%' % (100*statistics.median(v)), ' '.join('%+.1f' % (100*x) for x in v))
v = [(r['tp'][r['traced']]['ops']/r['tp'][1-r['traced']]['ops']) / (r['up'][r['traced']]['ops']/r['up'][1-r['traced']]['ops']) - 1 for r in rows]
print('ops ratio: median %+.2f%%' % (100*statistics.median(v)), ' '.join('%+.1f' % (100*x) for x in v))
for k in ('ut','st'):
    print('traced twin', k, 'share of its CPU, traced phase: %.3f' % statistics.median([r['tp'][r['traced']][k]/(r['tp'][r['traced']]['ut']+r['tp'][r['traced']]['st']) for r in rows]))
print('tracer cpu/s: %.4f' % statistics.median([r['tracer_cpu']/SECS for r in rows]))
