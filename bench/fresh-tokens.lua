-- wrk script for the "first-seen token" runs: every request carries a token the
-- proxy has not seen before (within one proxy process), so a token/verification
-- cache can never hit.
--
-- TOKENS_FILE holds one JWT per line, all distinct. Each wrk thread takes a
-- disjoint slice (line i goes to thread i % WRK_THREADS) and uses each token once.
-- When a thread runs out it stops. wrk itself keeps sleeping until -d is over and
-- divides by the full duration, so its Requests/sec would be too low: done()
-- prints the real active time, from which run.sh computes the rate.
--
-- No response() function on purpose: defining one makes wrk parse every response
-- header into Lua, which costs load-generator CPU for nothing.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()  -- CLOCK_MONOTONIC, seconds as a float
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state).
local tokens = {}
local idx = 0
local last_req = nil

function init(args)
  local file = os.getenv("TOKENS_FILE") or error("TOKENS_FILE is not set")
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  local i = 0
  for line in io.lines(file) do
    if line ~= "" then
      if i % nthreads == tid then tokens[#tokens + 1] = line end
      i = i + 1
    end
  end
  if #tokens == 0 then error("no tokens for thread " .. tid .. " in " .. file) end
  used = 0         -- globals, read back by done() through thread:get()
  exhausted = 0
  t_first = 0
  t_stop = 0
end

function request()
  if idx == 0 then t_first = now() end
  if idx < #tokens then
    idx = idx + 1
    used = idx
    last_req = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[idx] })
    return last_req
  end
  -- Out of fresh tokens: stop this thread. request() must still return something;
  -- the repeated last request is written but never counted (wrk stops reading),
  -- at most one per connection.
  if exhausted == 0 then
    exhausted = 1
    t_stop = now()
  end
  wrk.thread:stop()
  return last_req
end

function done(summary, latency, requests)
  local first, stop, used_total, all_exhausted = math.huge, 0, 0, 1
  for _, t in ipairs(threads) do
    local tf, tstop = t:get("t_first"), t:get("t_stop")
    if tf and tf > 0 and tf < first then first = tf end
    if t:get("exhausted") == 1 then
      if tstop > stop then stop = tstop end
    else
      all_exhausted = 0
    end
    used_total = used_total + (t:get("used") or 0)
  end
  local active = 0
  if all_exhausted == 1 and first < math.huge then active = stop - first end
  -- One machine-readable line for run.sh. active_s=0 means "ran the full duration".
  io.write(string.format("bench_fresh exhausted=%d active_s=%.6f tokens_used=%d\n",
    all_exhausted, active, used_total))
end
