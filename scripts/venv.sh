#!/usr/bin/env bash
# Create (or update) one virtualenv and pip-install into it, showing progress.
#
# pip with -q is silent for the two minutes a first install takes; without it,
# it prints a few hundred lines. This prints what it is doing instead: a line
# every few seconds with the packages collected so far, then the install, and
# the full pip output goes to DIR/pip-install.log, whose tail is shown when pip
# fails. A pip that fails leaves no stamp, so the next make tries again.
#
# Usage: bash scripts/venv.sh DIR LABEL PIP-INSTALL-ARGS...
#   e.g. bash scripts/venv.sh .venv Slipway -c constraints.txt -e '.[dev]'
# Env: PYTHON (python3), the interpreter the virtualenv is made from.
set -euo pipefail

dir="$1"
label="$2"
shift 2
python="${PYTHON:-python3}"
log_file="$dir/pip-install.log"

say() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$dir/bin/python" ]; then
    say "$label: creating the virtualenv $dir"
    "$python" -m venv "$dir" || {
        say "ERROR: '$python -m venv' failed; on Debian it needs python3-venv (make system installs it)" >&2
        exit 1
    }
fi

began=$SECONDS
say "$label: installing into $dir (a few minutes the first time; full log: $log_file)"
: >"$log_file"
"$dir/bin/python" -m pip install --upgrade pip >>"$log_file" 2>&1 || true

collected=0
last=$SECONDS
tty=0
[ -t 1 ] && tty=1
set +e
"$dir/bin/python" -m pip install --progress-bar off "$@" 2>&1 | tee -a "$log_file" | {
    phase="collecting"
    while true; do
        # pip is silent while it unpacks and installs: say so every 15 s.
        IFS= read -r -t 15 line
        rc=$?
        if [ "$rc" -gt 128 ]; then
            [ "$tty" -eq 1 ] && printf '\r\033[K'
            say "  still $phase ($(( SECONDS - began ))s so far)"
            continue
        fi
        [ "$rc" -eq 0 ] || break
        case "$line" in
            Collecting\ *)
                collected=$(( collected + 1 ))
                name="${line#Collecting }"
                name="${name%% *}"
                if [ "$tty" -eq 1 ]; then
                    printf '\r\033[K[setup]   %d packages collected, now %s' "$collected" "$name"
                elif (( SECONDS - last >= 10 )); then
                    say "  $collected packages collected so far ($(( SECONDS - began ))s)"
                    last=$SECONDS
                fi
                ;;
            Installing\ collected\ packages:*)
                count=$(( $(tr -cd ',' <<<"$line" | wc -c) + 1 ))
                [ "$tty" -eq 1 ] && printf '\r\033[K'
                say "  installing $count packages ($(( SECONDS - began ))s so far) ..."
                phase="installing $count packages"
                ;;
        esac
    done
    [ "$tty" -eq 1 ] && printf '\r\033[K'
    true
}
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    say "ERROR: pip install into $dir failed (exit $status); the end of $log_file:" >&2
    tail -n 25 "$log_file" >&2
    exit "$status"
fi
say "$label: ready in $(( SECONDS - began ))s"
