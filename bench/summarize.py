"""Summarize a bench/run.sh result directory as Markdown (printed): tables, fast-path checks, targets.

    python3 bench/summarize.py .cache/bench/<UTC time>

With the runs of `bench/run.sh --mitogen` (n<N>-mitogen-cold/-warm) it adds a table "with Mitogen" next
to the plain re-runs, and quotes what failed when a Mitogen run did not get through.
"""

import glob
import json
import os
import re
import statistics
import sys

PROBE_MODULES = ('gpu_host_facts', 'nvidia_smi_info', 'docker_daemon_config', 'cog_models_info')
REMOTE_MODULES = PROBE_MODULES + ('cog_firewall', 'cog_model')
LABELS = ('first', 'idem-cold', 'idem-warm', 'prov-idem-cold', 'mitogen-cold', 'mitogen-warm')

# Targets for the converged site re-run (docs/PERFORMANCE.md). The per-host counts are of the profile's
# per-host records: a module execution on the host is a record that is neither controller-only nor
# skipped; a task is any record of the host, skipped ones included.
TARGET_MODULE_CALLS = 10
TARGET_TASKS = 35
TARGET_WALL_1 = 7.0
TARGET_CPU_PER_HOST = 1.5
TARGET_CPU_AT = 10


def load(path, default=None):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def fmt(value, digits=1):
    return '-' if value is None else ('%.*f' % (digits, value))


def run_data(out, n, label):
    measure = load(os.path.join(out, 'n%d-%s.measure.json' % (n, label)))
    profile = load(os.path.join(out, 'n%d-%s.profile.json' % (n, label)))
    if measure is None or profile is None:
        return None
    recs = profile['records']
    for rec in recs:
        # A role's argument check runs on the controller (profiles written before the callback knew it say otherwise).
        if rec['action'] in ('validate_argument_spec', 'ansible.builtin.validate_argument_spec'):
            rec['controller_only'] = True
    hosts = sorted(h for h in profile['stats'] if h != 'localhost')
    per_host = [r for r in recs if r['host'] in hosts]
    durations = [r['duration'] for r in per_host if r['duration'] is not None]
    remote = [r['duration'] for r in per_host if r['duration'] is not None and not r['controller_only']
              and r['status'] != 'skipped']
    changed = sum(profile['stats'][h]['changed'] for h in profile['stats'])
    tasks_per_host = len(per_host) / float(len(hosts)) if hosts else 0
    # Per host: every record (skipped included), and those that ran a module on the host.
    tasks_by_host = dict((h, sum(1 for r in per_host if r['host'] == h)) for h in hosts)
    calls_by_host = dict((h, sum(1 for r in per_host if r['host'] == h and not r['controller_only']
                                 and r['status'] != 'skipped')) for h in hosts)
    return {
        'wall': measure['wall'], 'rss_tree': measure['peak_tree_pss_mib'], 'rss_proc': measure['peak_process_rss_mib'],
        'changed': changed, 'hosts': hosts, 'records': recs, 'tasks_per_host': tasks_per_host,
        'mean_task_ms': 1000 * statistics.mean(durations) if durations else None,
        'mean_remote_ms': 1000 * statistics.mean(remote) if remote else None,
        'wall_per_task_host_ms': 1000 * measure['wall'] / len(per_host) if per_host else None,
        'busy': measure.get('machine_busy_pct'), 'load': measure.get('load_at_start'),
        'cpu': measure.get('controller_cpu_s'), 'rc': measure.get('rc'),
        'tasks_by_host': tasks_by_host, 'calls_by_host': calls_by_host,
        'failed': sum(profile['stats'][h]['failures'] + profile['stats'][h]['unreachable'] for h in profile['stats']),
    }


def main():
    out = sys.argv[1]
    sizes = sorted(int(re.search(r'n(\d+)\.mode$', p).group(1)) for p in glob.glob(os.path.join(out, 'n*.mode')))
    modes = dict((n, open(os.path.join(out, 'n%d.mode' % n)).read().strip()) for n in sizes)
    lines = []
    say = lines.append
    machine = open(os.path.join(out, 'machine.txt')).read().strip().splitlines() \
        if os.path.exists(os.path.join(out, 'machine.txt')) else []
    say('## Results')
    say('')
    for line in machine:
        say('- ' + line)
    say('')

    runs = {}
    for n in sizes:
        for label in LABELS:
            runs[(n, label)] = run_data(out, n, label)

    def baseline(n):
        try:
            values = [int(x) for x in open(os.path.join(out, 'n%d-baseline.ms' % n)).read().split()]
        except OSError:
            return None
        return statistics.median(values) / 1000.0

    one = sizes[0] if sizes else None
    say('Times in seconds. "re-run" is the idempotent re-run with fresh SSH connections (what a user re-running '
        'later gets); "warm" is the same with the ControlPersist masters of the previous run still up. The '
        'baseline is one plain SSH session per host, all hosts at once, running the same probes by hand '
        '(median of 3).')
    say('')
    say('| hosts | playbook | lab set-up | first converge | re-run | changed | warm re-run | tasks/host '
        '| ms/task/host (mean) | ms/task/host (remote tasks) | wall/(tasks x hosts) ms | peak memory: tree PSS / largest '
        'process RSS (MiB) | baseline | re-run / baseline | re-run / 1 host | controller CPU in re-run (s) '
        '| machine CPU busy in re-run / load at start |')
    say('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for n in sizes:
        first, idem, warm = runs[(n, 'first')], runs[(n, 'idem-cold')], runs[(n, 'idem-warm')]
        if idem is None:
            continue
        base = baseline(n)
        ref = runs.get((one, 'idem-cold')) if modes[one] == modes[n] else runs.get((one, 'prov-idem-cold'))
        try:
            lab = int(open(os.path.join(out, 'n%d-lab.s' % n)).read())
        except OSError:
            lab = None
        peak = max(r['rss_tree'] for r in (first, idem, warm) if r)
        peak_proc = max(r['rss_proc'] for r in (first, idem, warm) if r)
        say('| %d | %s | %s | %s | %s | %d | %s | %.0f | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s %% / %s |' % (
            n, modes[n], lab if lab is not None else '-', fmt(first['wall'] if first else None), fmt(idem['wall']),
            idem['changed'], fmt(warm['wall'] if warm else None), idem['tasks_per_host'], fmt(idem['mean_task_ms'], 0),
            fmt(idem['mean_remote_ms'], 0), fmt(idem['wall_per_task_host_ms'], 0), fmt(peak, 0), fmt(peak_proc, 0),
            fmt(base, 2), ('%.1f x' % (idem['wall'] / base)) if base else '-',
            ('%.2f x' % (idem['wall'] / ref['wall'])) if ref else '-', fmt(idem['cpu'], 1), fmt(idem['busy'], 0),
            fmt(idem['load'], 1)))
    say('')

    prov = [(n, runs[(n, 'prov-idem-cold')] or (runs[(n, 'idem-cold')] if modes[n] == 'provision' else None))
            for n in sizes]
    prov = [(n, r) for n, r in prov if r]
    if prov:
        ref = prov[0][1]['wall']
        say('Idempotent re-run of the provision playbook alone (every size runs it, so sizes compare alike):')
        say('')
        say('| hosts | provision re-run | changed | / %d host(s) |' % prov[0][0])
        say('| ---: | ---: | ---: | ---: |')
        for n, r in prov:
            say('| %d | %s | %d | %.2f x |' % (n, fmt(r['wall']), r['changed'], r['wall'] / ref))
        say('')

    mitogen_section(out, sizes, modes, runs, machine, say)

    # The floor: what one trivial task costs per host at each size.
    floor_rows = []
    for n in sizes:
        prof = load(os.path.join(out, 'n%d-floor.profile.json' % n))
        if not prof:
            continue
        kinds = {}
        for x in prof['records']:
            for kind in ('Floor become ping', 'Floor ping', 'Floor debug'):
                if x['task'].startswith(kind + ' ') and x['duration'] is not None and x['host'] != 'localhost':
                    kinds.setdefault(kind, []).append(x['duration'])
                    break
        floor_rows.append((n, [1000 * statistics.mean(kinds[k]) if k in kinds else None
                               for k in ('Floor ping', 'Floor become ping', 'Floor debug')]))
    if floor_rows:
        say('The floor (bench/playbooks/floor.yml): mean per-host duration of one trivial task, in ms.')
        say('')
        say('| hosts | ping (a module on the host) | ping with become | debug (controller only) |')
        say('| ---: | ---: | ---: | ---: |')
        for n, vals in floor_rows:
            say('| %d | %s |' % (n, ' | '.join(fmt(v, 0) for v in vals)))
        say('')

    # Fast-path checks on every idempotent re-run.
    say('### Fast path, checked on the re-runs')
    say('')
    for n in sizes:
        for label in ('idem-cold', 'prov-idem-cold', 'mitogen-cold'):
            r = runs[(n, label)]
            if r is None:
                continue
            recs = [x for x in r['records'] if x['host'] in r['hosts']]
            changed = sorted(set(x['task'] for x in recs if x['changed']))
            apt_refresh = sorted(set(x['task'] for x in recs if x.get('cache_updated')))
            pulls = sorted(set(a for x in recs for a in x.get('actions', []) if a.startswith('pulled')))
            calls = {}
            for mod in REMOTE_MODULES:
                counts = [sum(1 for x in recs if x['host'] == h and x['action'].endswith('.' + mod)
                              and x['status'] == 'ok') for h in r['hosts']]
                calls[mod] = '%d' % counts[0] if len(set(counts)) == 1 else '%d-%d' % (min(counts), max(counts))
            what = '%s re-run' % (modes[n] if label != 'prov-idem-cold' else 'provision')
            if label == 'mitogen-cold':
                what += ' under Mitogen' + (' (run failed, see "with Mitogen")' if r['failed'] or r['rc'] else '')
            say('- %d host(s), %s: changed tasks: %s; apt cache refreshed by: %s; image pulls: %s; module calls per '
                'host: %s.' % (n, what,
                               ', '.join(changed) or 'none', ', '.join(apt_refresh) or 'none', ', '.join(pulls) or 'none',
                               ', '.join('%s %s' % (m, c) for m, c in calls.items())))
    say('')

    # Where the time of the smallest size's re-run goes.
    r = runs.get((one, 'idem-cold')) if one is not None else None
    if r and len(r['hosts']) == 1:
        host = r['hosts'][0]
        mine = [x for x in r['records'] if x['host'] == host and x['duration'] is not None]
        parts = [('module calls on the host', [x for x in mine if not x['controller_only'] and x['status'] != 'skipped']),
                 ('controller-only tasks (set_fact, assert, debug, include, argument specs)',
                  [x for x in mine if x['controller_only'] and x['status'] != 'skipped']),
                 ('skipped tasks', [x for x in mine if x['status'] == 'skipped'])]
        local = [x for x in r['records'] if x['host'] == 'localhost' and x['duration'] is not None]
        accounted = sum(x['duration'] for part in parts for x in part[1]) + sum(x['duration'] for x in local)
        say('Where the %s re-run on %d host goes (%.1f s wall): %s; the report play on the controller %.1f s (%d tasks); '
            'start-up, parsing and the gaps between tasks %.1f s.' % (
                modes[one], one, r['wall'],
                '; '.join('%s %.1f s (%d, %.0f ms each)' % (
                    what, sum(x['duration'] for x in xs), len(xs), 1000 * sum(x['duration'] for x in xs) / max(1, len(xs)))
                    for what, xs in parts),
                sum(x['duration'] for x in local), len(local), r['wall'] - accounted))
        say('')

    # Slowest tasks of the re-run at the smallest and the largest size.
    for n in sorted(set([sizes[0], sizes[-1]])) if sizes else []:
        r = runs[(n, 'idem-cold')]
        if r is None:
            continue
        by_task = {}
        for x in r['records']:
            if x['host'] in r['hosts'] and x['duration'] is not None:
                by_task.setdefault((x['task'], x['action'].split('.')[-1]), []).append(x['duration'])
        top = sorted(by_task.items(), key=lambda kv: -statistics.mean(kv[1]))[:8]
        say('Slowest tasks of the %s re-run on %d host(s) (mean per host, ms): %s.' % (
            modes[n], n, '; '.join('%s (%s) %.0f' % (t, a, 1000 * statistics.mean(d)) for (t, a), d in top)))
        say('')

    # On-host module timings.
    mod_rows = []
    path = os.path.join(out, 'modules.tsv')
    if os.path.exists(path):
        for line in open(path):
            parts = line.rstrip('\n').split('\t')
            times = [int(t) for t in parts[2:]]
            mod_rows.append((parts[0], parts[1], statistics.median(times), min(times)))
        say('### On-host module execution time (demo-gpu-1, idempotent site run, median of 5 after a warm-up)')
        say('')
        say('| task | module | median ms | min ms |')
        say('| --- | --- | ---: | ---: |')
        for task, module, med, low in mod_rows:
            say('| %s | %s | %.0f | %d |' % (task, module, med, low))
        say('')

    # Readiness detection.
    ready = []
    for p in sorted(glob.glob(os.path.join(out, 'n*-ready-setup*.profile.json'))):
        setup = int(re.search(r'setup(\d+)', p).group(1))
        for x in load(p)['records']:
            for m in x.get('models', []):
                if m.get('action') in ('created', 'replaced', 'started'):
                    ready.append((setup, m['action'], m['ready_seconds'], m['ready_seen_after_s']))
    if ready:
        say('### Readiness detection (hello_cog replaced on demo-gpu-1 with a known SETUP_SECONDS, poll_interval 0.2 s)')
        say('')
        say('| SETUP_SECONDS | action | READY seen after start (s) | noticed after READY (s) |')
        say('| ---: | --- | ---: | ---: |')
        for setup, action, secs, seen in ready:
            say('| %d | %s | %s | %s |' % (setup, action, fmt(secs, 2), fmt(seen, 3)))
        say('')

    # Targets.
    say('### Targets')
    say('')
    site_targets(sizes, modes, runs, say)
    big = sizes[-1] if sizes else None
    if big and big != one:
        same = 'idem-cold' if modes[big] == modes[one] else 'prov-idem-cold'
        rb, ra = runs.get((big, 'idem-cold')), runs.get((one, same))
        if rb and ra:
            ratio = rb['wall'] / ra['wall']
            say('- %d hosts (forks 20) within 2.5 x the %d-host time, %s playbook: %s (%.1f s vs %.1f s = %.2f x).' % (
                big, one, modes[big], 'MET' if ratio <= 2.5 else 'MISSED', rb['wall'], ra['wall'], ratio))
    probes = [row[:3] for row in mod_rows if row[1] in PROBE_MODULES]
    if probes:
        slow = [(t, m, med) for t, m, med in probes if med >= 300]
        say('- Each probe module under 0.3 s on the host: %s (%s).' % (
            'MET' if not slow else 'MISSED', ', '.join('%s %.0f ms' % (m, med) for t, m, med in probes)))
    seen = [row[3] for row in ready if row[3] is not None]
    if seen:
        say('- Readiness noticed within 0.5 s of READY: %s (worst %.3f s, mean %.3f s over %d replacements).' % (
            'MET' if max(seen) <= 0.5 else 'MISSED', max(seen), statistics.mean(seen), len(seen)))
    print('\n'.join(lines))


def met(ok):
    return 'MET' if ok else 'MISSED'


def spread(values):
    """'7' when every host has the same count, '7-9' otherwise."""
    low, high = min(values), max(values)
    return '%d' % low if low == high else '%d-%d' % (low, high)


def fast_path(r):
    """(changed tasks, apt cache refreshes, image pulls) of a run, as sorted lists."""
    recs = [x for x in r['records'] if x['host'] in r['hosts']]
    return (sorted(set(x['task'] for x in recs if x['changed'])),
            sorted(set(x['task'] for x in recs if x.get('cache_updated'))),
            sorted(set(a for x in recs for a in x.get('actions', []) if a.startswith('pulled'))))


def site_targets(sizes, modes, runs, say):
    """The targets of the converged site re-run (cold, plain strategy), per size."""
    site = [(n, runs[(n, 'idem-cold')]) for n in sizes if modes[n] == 'site' and runs[(n, 'idem-cold')]]
    for n, r in site:
        changed, apt, pulls = fast_path(r)
        say('- %d host(s), site re-run changes nothing, refreshes no apt cache, pulls no image: %s (changed=%d%s%s%s).' % (
            n, met(r['changed'] == 0 and not changed and not apt and not pulls), r['changed'],
            '; changed: ' + ', '.join(changed) if changed else '', '; apt cache refreshed by: ' + ', '.join(apt) if apt else '',
            '; pulls: ' + ', '.join(pulls) if pulls else ''))
    for n, r in site:
        calls = list(r['calls_by_host'].values())
        say('- %d host(s), module executions on the host per host in the site re-run, at most %d: %s (%s per host).' % (
            n, TARGET_MODULE_CALLS, met(max(calls) <= TARGET_MODULE_CALLS), spread(calls)))
    for n, r in site:
        tasks = list(r['tasks_by_host'].values())
        say('- %d host(s), tasks per host in the site re-run (skipped included), at most %d: %s (%s per host).' % (
            n, TARGET_TASKS, met(max(tasks) <= TARGET_TASKS), spread(tasks)))
    r1 = runs.get((1, 'idem-cold')) if 1 in sizes and modes[1] == 'site' else None
    if r1:
        over = r1['wall'] - TARGET_WALL_1
        say('- Site re-run on 1 host within %g s: %s (%.1f s%s).' % (
            TARGET_WALL_1, met(over <= 0), r1['wall'], ', %.1f s over' % over if over > 0 else ''))
    cpu = [(n, r['cpu'] / float(n)) for n, r in site if r.get('cpu') is not None]
    if cpu:
        judged = dict(cpu).get(TARGET_CPU_AT)
        verdict = met(judged <= TARGET_CPU_PER_HOST) if judged is not None else \
            'NOT JUDGED (no %d-host site re-run)' % TARGET_CPU_AT
        say('- Controller CPU per host of the site re-run, at most %g s at %d hosts: %s (%s).' % (
            TARGET_CPU_PER_HOST, TARGET_CPU_AT, verdict,
            ', '.join('%d host(s) %.2f s' % (n, c) for n, c in cpu)))


def failure_lines(out, n, label, limit=8):
    """What went wrong in a run: its failed or unreachable results from the profile (host, task, action,
    message), else the error lines of its log."""
    prof = load(os.path.join(out, 'n%d-%s.profile.json' % (n, label)))
    lines = []
    if prof:
        for x in prof['records']:
            if x['status'] in ('failed', 'unreachable'):
                lines.append('%s %s: %s (%s): %s' % (
                    x['host'], x['status'], x['task'], x['action'], ' '.join(x.get('msg', '').split())[:300]))
    if not lines:
        try:
            with open(os.path.join(out, 'n%d-%s.log' % (n, label))) as handle:
                log = handle.read().splitlines()
        except OSError:
            log = []
        lines = [' '.join(line.split())[:300] for line in log
                 if re.search(r'ERROR|fatal:|Traceback|Error:|unreachable', line)] or \
            [' '.join(line.split())[:300] for line in log[-3:]]
    return lines[:limit]


def mitogen_section(out, sizes, modes, runs, machine, say):
    """The idempotent re-runs under Mitogen next to the plain ones (bench/run.sh --mitogen)."""
    tried = [n for n in sizes if runs[(n, 'mitogen-cold')] or os.path.exists(
        os.path.join(out, 'n%d-mitogen-cold.measure.json' % n))]
    if not tried:
        return
    version = [line.split(':', 1)[1].strip() for line in machine if line.startswith('mitogen:')]
    say('### with Mitogen')
    say('')
    say('The same idempotent re-run with `ANSIBLE_STRATEGY=mitogen_linear` (Mitogen %s), right after the plain '
        'ones on the same converged hosts: cold with fresh SSH connections, warm with the masters of the cold '
        'run still up. Controller CPU is the `ansible-playbook` tree (with Mitogen: also its connection '
        'multiplexer and ssh clients). Tasks/host counts every per-host result, skipped included; module '
        'calls/host those that ran on the host.' % (version[0].split()[0] if version else '?'))
    say('')
    say('| hosts | playbook | strategy | re-run (s) | changed | failed | controller CPU (s) | tasks/host | '
        'module calls/host | warm re-run (s) | warm changed | warm controller CPU (s) | re-run / plain | '
        'CPU / plain |')
    say('| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for n in tried:
        plain = runs[(n, 'idem-cold')]
        for strategy, cold_label, warm_label in (('linear (plain)', 'idem-cold', 'idem-warm'),
                                                 ('mitogen_linear', 'mitogen-cold', 'mitogen-warm')):
            cold, warm = runs[(n, cold_label)], runs[(n, warm_label)]
            if cold is None:
                measure = load(os.path.join(out, 'n%d-%s.measure.json' % (n, cold_label)), {})
                try:  # bench/run.sh writes the exit status of a failed Mitogen run here
                    rc = open(os.path.join(out, 'n%d-%s.failed' % (n, cold_label))).read().strip()
                except OSError:
                    rc = measure.get('rc', '?')
                say('| %d | %s | %s | %s | - | run failed (exit %s), no profile | %s | - | - | - | - | - | - | - |' % (
                    n, modes[n], strategy, fmt(measure.get('wall')), rc,
                    fmt(measure.get('controller_cpu_s'))))
                continue
            # Ratios only between two runs that got through: a failed run stops early and is "fast".
            broken = bool(cold['failed'] or cold['rc'])
            mine = cold is not plain and plain and not broken
            if broken:
                strategy += ' (run failed)'
            say('| %d | %s | %s | %s | %d | %d | %s | %.0f | %s | %s | %s | %s | %s | %s |' % (
                n, modes[n], strategy, fmt(cold['wall']), cold['changed'], cold['failed'], fmt(cold['cpu']),
                cold['tasks_per_host'], spread(list(cold['calls_by_host'].values())) if cold['hosts'] else '-',
                fmt(warm['wall'] if warm else None), ('%d' % warm['changed']) if warm else '-',
                fmt(warm['cpu'] if warm else None),
                ('%.2f x' % (cold['wall'] / plain['wall'])) if mine else '-',
                ('%.2f x' % (cold['cpu'] / plain['cpu'])) if mine and cold['cpu'] and plain['cpu'] else '-'))
    say('')
    for n in tried:
        for label in ('mitogen-cold', 'mitogen-warm'):
            r = runs[(n, label)]
            failed = os.path.exists(os.path.join(out, 'n%d-%s.failed' % (n, label)))
            if failed or (r and (r['failed'] or r['rc'])):
                say('Mitogen %s re-run on %d host(s) failed (log: n%d-%s.log):' % (label.split('-')[1], n, n, label))
                say('')
                for line in failure_lines(out, n, label):
                    say('- `%s`' % line.replace('`', "'"))
                say('')


if __name__ == '__main__':
    main()
