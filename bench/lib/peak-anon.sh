# Sourced by the benchmarks.
# peak_anon KIB_FILE CMD...: runs CMD (stdout and stderr are the caller's), writes the peak
# of its anonymous resident memory (RssAnon in KiB, sampled every 10 ms) to KIB_FILE and
# returns CMD's status. Anonymous memory is what a device must find free in RAM; the pages
# of mapped files (the old slot, the delta) are the page cache's and can be dropped.
peak_anon() {
  local out=$1 pid peak=0 k v rc=0
  shift
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    { while read -r k v _; do
        if [ "$k" = RssAnon: ] && [ "$v" -gt "$peak" ]; then peak=$v; fi
      done <"/proc/$pid/status"; } 2>/dev/null || true
    sleep 0.01
  done
  wait "$pid" || rc=$?
  echo "$peak" >"$out"
  return $rc
}
