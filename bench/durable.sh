# shellcheck shell=bash disable=SC2034  # sets run-all.sh's per-case variables
# Durable channels (issue 11): the cost of a durable publish, and a
# recovery storm. Sourced by bench/run-all.sh (it uses its run_case,
# RC_EXTRA_ENV, ADMIN_PORT ...), which runs it as the case group
# "durable"; alone, rewriting only the "Durable channels" section of
# docs/benchmarks.md:
#
#   ONLY=durable bash bench/run-all.sh          # ~5 minutes on a quiet machine
#   ONLY=durable-storm-64 OUT=DIR bash bench/run-all.sh   # one case again
#
# Cases (redcast with the rules below, pinned as in run-all):
#   durable-publish       PUBLISH against FCALL redcast_publish (no history,
#                         history_size 100 and 1000), 1 and 64 in flight on
#                         one connection; Redis CPU per publish (INFO CPU)
#   durable-storm-<R>     DURABLE_CLIENTS clients resume at once after missing
#                         DURABLE_MISSED messages each, with history.max_reads R
#
# Environment (besides run-all's):
#   DURABLE_CLIENTS   resuming clients (default 5000)
#   DURABLE_CHANNELS  their channels (default 50: 100 clients each)
#   DURABLE_MISSED    messages each misses (default 100)
#   DURABLE_OTHERS    clients that stay connected, measuring live latency (200)
#   DURABLE_READS     history.max_reads values, one storm each (default "64 4 1024")

# h100.* and h1000.* keep history; anything else is a plain channel.
DURABLE_RULES='[{pattern = "h100.*", subscribe = "anyone", history_size = 100, history_ttl = "10m"},
 {pattern = "h1000.*", subscribe = "anyone", history_size = 1000, history_ttl = "10m"},
 {pattern = "*", subscribe = "anyone"}]'

durable_cases() {
  case " $ONLY " in
    "  " | *" durable"*) ;; # the group, or some of its cases by name
    *) return 0 ;;
  esac
  echo "== durable channels: publish cost, recovery storm" >&2
  local reads admin="http://127.0.0.1:$ADMIN_PORT"
  RC_EXTRA_ENV=("REDCAST_CHANNELS__RULES=$DURABLE_RULES")
  CASE_GROUP=durable run_case durable-publish redcast --scenario durable-publish \
    --channels 10 --history-sizes 100,1000 --depths 1,64 --cell-seconds 5 --admin-url "$admin"
  for reads in ${DURABLE_READS:-64 4 1024}; do
    RC_EXTRA_ENV=("REDCAST_CHANNELS__RULES=$DURABLE_RULES" "REDCAST_HISTORY__MAX_READS=$reads")
    CASE_GROUP=durable run_case "durable-storm-$reads" redcast --scenario durable-storm \
      --clients "${DURABLE_CLIENTS:-5000}" --channels "${DURABLE_CHANNELS:-50}" \
      --missed "${DURABLE_MISSED:-100}" --live-before 5 --others "${DURABLE_OTHERS:-200}" \
      --other-channels 20 --rate 200 --storm-rate 50 --baseline-seconds 5 \
      --server-max-reads "$reads" --admin-url "$admin"
  done
  RC_EXTRA_ENV=()
}
