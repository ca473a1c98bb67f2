# Small helpers shared by tools/dev and tests/e2e/run.sh. Source it; it defines functions only.
# shellcheck shell=bash

# ip, sshd and nginx live in sbin, which some users' PATH lacks.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac

rf_log() { printf '%s\n' "$*" >&2; }
rf_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# rf_wait_for SECONDS DESCRIPTION CMD...: retries CMD every 0.1 s until it succeeds or SECONDS pass.
rf_wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  while ! "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      rf_log "timed out after ${secs}s waiting for: $what"
      return 1
    fi
    sleep 0.1
  done
}

# True while PID exists and is not a zombie (a zombie child still answers kill -0).
rf_pid_alive() {
  local pid=$1 stat
  [[ -r /proc/$pid/stat ]] || return 1
  stat=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $stat && $stat != Z && $stat != X ]]
}

# rf_stop_pids SECONDS PID...: SIGTERM, then SIGKILL whatever is left after SECONDS; reaps our children.
rf_stop_pids() {
  local secs=$1; shift
  local pid deadline left
  (($# > 0)) || return 0
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + secs))
  while :; do
    left=0
    for pid in "$@"; do rf_pid_alive "$pid" && left=1; done
    ((left)) || break
    if ((SECONDS >= deadline)); then
      for pid in "$@"; do rf_pid_alive "$pid" && { kill -KILL "$pid" 2>/dev/null || true; }; done
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
  return 0
}

# rf_have CMD...: true when every command is on PATH.
rf_have() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || return 1; done
}
