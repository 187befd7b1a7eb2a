-- wrk script for bench/stores.sh: single-use tickets, issued and redeemed.
--
-- One unit = POST {TICKET_ENDPOINT} with the bearer token (201 {"ticket": ...}), then
-- GET {REDEEM_PATH}?{TICKET_PARAM}=<that ticket> (200 the first and only time).
--
-- wrk keeps one request in flight per connection, but its Lua state belongs to the
-- thread, and request() for a connection runs in a later event-loop turn than the
-- response() that preceded it, so "the ticket of this connection's last response"
-- cannot be tracked. Tickets go through a FIFO instead: response() queues every issued
-- ticket, request() redeems the oldest queued ticket when there is one and asks for a
-- new ticket otherwise. Every ticket is redeemed exactly once, by whichever connection
-- is free first; at most one ticket per connection is still queued when the run ends.
--
-- done() prints: bench_tickets issued=N redeemed=N failed=N queued=N
--
-- TICKET_GAP_MS (optional, bench/soak.sh): each connection waits this long before each
-- request, so the load has a fixed rate instead of saturating.

local gap = tonumber(os.getenv("TICKET_GAP_MS") or "")
if gap and gap > 0 then
  function delay()
    return gap
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local post_req, get_prefix, get_suffix
local queue, head, tail = {}, 1, 0

-- Globals, so that done() can read them through thread:get().
issued, redeemed, failed, queued = 0, 0, 0, 0

function init(args)
  local token = os.getenv("BENCH_TOKEN") or error("BENCH_TOKEN is not set")
  local endpoint = os.getenv("TICKET_ENDPOINT") or "/.gatehouse/ticket"
  local path = os.getenv("REDEEM_PATH") or "/t"
  local param = os.getenv("TICKET_PARAM") or "ticket"
  local host = wrk.headers["Host"]  -- set by wrk.init from the URL before init() runs
  post_req = "POST " .. endpoint .. " HTTP/1.1\r\nHost: " .. host ..
    "\r\nAuthorization: Bearer " .. token .. "\r\nContent-Length: 0\r\n\r\n"
  get_prefix = "GET " .. path .. "?" .. param .. "="
  get_suffix = " HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
end

function request()
  if head <= tail then
    local t = queue[head]
    queue[head] = nil
    head = head + 1
    return get_prefix .. t .. get_suffix
  end
  return post_req
end

function response(status, headers, body)
  if status == 201 then
    local t = body and body:match('"ticket"%s*:%s*"([^"]+)"')
    if t then
      issued = issued + 1
      tail = tail + 1
      queue[tail] = t
    else
      failed = failed + 1
    end
  elseif status == 200 then
    redeemed = redeemed + 1
  else
    failed = failed + 1
  end
  queued = tail - head + 1
end

function done(summary, latency, requests)
  local i, r, f, q = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    i = i + (t:get("issued") or 0)
    r = r + (t:get("redeemed") or 0)
    f = f + (t:get("failed") or 0)
    q = q + (t:get("queued") or 0)
  end
  io.write(string.format("bench_tickets issued=%d redeemed=%d failed=%d queued=%d\n", i, r, f, q))
end
