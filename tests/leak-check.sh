#!/bin/bash
# Leak check around the whole end-to-end suite: processes, temp roots,
# mounts, network devices and namespaces that hull's tests could leave.
#   leak-check.sh snapshot FILE   record what exists before the suite
#   leak-check.sh compare FILE    fail, listing them, on anything new
set -euo pipefail

inventory() {
    # Processes of test installations, supervisors and VMs.
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null || true)
        exe=$(readlink "$p/exe" 2>/dev/null || true)
        case "$cmd" in
            *hull-e2e*|*__supervise*|*__pool*|*__share*|*e2e-templates*) echo "process ${p#/proc/}: $cmd" ;;
            # A VMM by its binary, not a build that names the crate.
            *) case "$exe" in */hull-vmm) echo "process ${p#/proc/}: $cmd" ;; esac ;;
        esac
    done
    # Templates half made (or their locks) after the suite ended.
    if [ -n "${HULL_TEST_TEMPLATES:-}" ]; then
        for f in "$HULL_TEST_TEMPLATES"/.[!.]*; do
            [ -e "$f" ] && echo "template leftover: $f"
        done
    fi
    for d in "${TMPDIR:-/tmp}"/hull-e2e*; do
        [ -e "$d" ] && echo "temp root: $d"
    done
    grep -E 'hull' /proc/mounts | sed 's/^/mount: /' || true
    ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(hull|tap)' | sed 's/^/link: /' || true
    ip netns list 2>/dev/null | grep -E '^hull' | sed 's/^/netns: /' || true
}

case "${1:-}" in
    snapshot) inventory | sed -E 's/^process [0-9]+: /process: /' | sort > "$2" ;;
    compare)
        now=$(mktemp)
        # Give supervisors of the last tests a moment to finish.
        for _ in $(seq 1 20); do
            inventory | sed -E 's/^process [0-9]+: /process: /' | sort > "$now"
            comm -13 "$2" "$now" | grep -q . || break
            sleep 0.5
        done
        leaks=$(comm -13 "$2" "$now")
        rm -f "$now"
        if [ -n "$leaks" ]; then
            echo "leak check: the test suite left these behind:" >&2
            echo "$leaks" >&2
            exit 1
        fi
        echo "leak check: nothing left behind"
        ;;
    *) echo "usage: $0 snapshot|compare FILE" >&2; exit 2 ;;
esac
