-- wrk script for the fixed-rate runs (RATE=N bash bench/run.sh): every connection waits
-- CONNECTIONS*1000/RATE ms before each request, so the whole run offers about RATE req/s
-- (a little less: each request's own latency adds to its connection's gap). This is what
-- a proxy costs per request when it is not saturated: wake-ups and syscalls are no longer
-- shared between requests that arrive together.
local gap = tonumber(os.getenv("CONNECTIONS")) * 1000 / tonumber(os.getenv("RATE"))

function delay()
  return gap
end
