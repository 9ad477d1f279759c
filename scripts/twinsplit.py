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
import json, os, signal, statistics, subprocess, sys, threading, time

if len(sys.argv) < 6:
    sys.exit(__doc__)
BIN, TWIN, TRACER = sys.argv[1:4]
ROUNDS, SECS, ARGS = int(sys.argv[4]), float(sys.argv[5]), sys.argv[6:]
HZ = os.sysconf('SC_CLK_TCK')


def cpu_faults(pid):
    """(minor faults, user s, system s) of `pid` (/proc/PID/stat fields 10, 14, 15)."""
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return int(f[7]), int(f[11]) / HZ, int(f[12]) / HZ


def read_ticks(out, into):
    for line in out:
        f = line.split()
        if len(f) >= 3 and f[0] == 'tick':
            into.append((int(f[1]) / 1e9, int(f[2])))


def snap(procs):
    return time.time(), [cpu_faults(p.pid) for p in procs]


def phase(ticks, a, b):
    """Each twin's operations, faults and CPU between snapshots a and b."""
    out = []
    for i in range(2):
        (fa, ua, sa), (fb, ub, sb) = a[1][i], b[1][i]
        ops = sum(n for t, n in ticks[i] if a[0] < t <= b[0])
        out.append(dict(ops=ops, flt=fb - fa, ut=ub - ua, st=sb - sa, cpu=ub - ua + sb - sa))
    return out


def per_op(ph, t, key):
    """The traced twin's `key` per operation over its twin's."""
    x, y = ph[t], ph[1 - t]
    return (x[key] / x['ops']) / (y[key] / y['ops'])


procs, ticks, tracer, rows = [], [[], []], None, []
try:
    for i, b in enumerate((BIN, TWIN)):
        p = subprocess.Popen([b] + ARGS + ['-seconds', '100000', '-tick', '100ms'],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        threading.Thread(target=read_ticks, args=(p.stdout, ticks[i]), daemon=True).start()
    time.sleep(5)
    for r in range(ROUNDS):
        t = r % 2
        tracer = subprocess.Popen([TRACER, '--pid', str(procs[t].pid)], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        for line in tracer.stdout:
            if 'attached' in line:
                break
        threading.Thread(target=lambda out=tracer.stdout: [None for _ in out], daemon=True).start()
        time.sleep(4)
        t0 = sum(cpu_faults(tracer.pid)[1:])
        a = snap(procs); time.sleep(SECS); b = snap(procs)
        t1 = sum(cpu_faults(tracer.pid)[1:])
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)
        tracer = None
        time.sleep(2)
        c = snap(procs); time.sleep(SECS); d = snap(procs)
        rows.append(dict(round=r, traced=t, tracer_cpu=t1 - t0,
                         tp=phase(ticks, a, b), up=phase(ticks, c, d)))
        print(json.dumps(rows[-1]), flush=True)
finally:
    for p in ([tracer] if tracer else []) + procs:
        p.kill()
        p.wait()


def show(name, values, fmt='%+.2f%%', scale=100):
    print(f'{name}: median {fmt % (scale * statistics.median(values))}  rounds',
          ' '.join('%+.1f' % (100 * v) for v in values))


print('--- traced twin against its twin, traced phase over untraced phase (medians over rounds)')
for key in ('ut', 'st', 'cpu', 'flt'):
    show(f'{key} per op', [per_op(r['tp'], r['traced'], key) / per_op(r['up'], r['traced'], key) - 1
                           for r in rows])
    if key in ('ut', 'st'):  # the same change in seconds a second of one CPU
        show(f'  extra {key} (of one CPU)',
             [(per_op(r['tp'], r['traced'], key) / per_op(r['up'], r['traced'], key) - 1)
              * r['tp'][r['traced']][key] / SECS for r in rows])
show('ops ratio', [(r['tp'][r['traced']]['ops'] / r['tp'][1 - r['traced']]['ops'])
                   / (r['up'][r['traced']]['ops'] / r['up'][1 - r['traced']]['ops']) - 1 for r in rows])
print('system share of the traced twin\'s CPU, traced phase: %.3f'
      % statistics.median([r['tp'][r['traced']]['st'] / r['tp'][r['traced']]['cpu'] for r in rows]))
print('tracer CPU (of one CPU): %.4f' % statistics.median([r['tracer_cpu'] / SECS for r in rows]))
