-- wrk script: a fixed rate of badly signed requests (a 1 KB JSON body whose
-- X-Hub-Signature-256 is wrong, so every answer should be 401), for the rejected-flood figure.
--
-- Usage: wrk -t1 -c100 -d60s -s flood.lua URL -- RATE BODY_BYTES
-- wrk waits for each answer, then calls delay() before the next request on that connection.
-- A fixed gap would make the rate depend on the server's latency, so delay() hands out slots
-- on one shared schedule of RATE per second instead (LuaJIT's FFI gives a millisecond clock);
-- the rate holds as long as the connections are enough to cover the latency. If they are not,
-- the rate falls short, which done() reports rather than hides.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } flood_timespec;
int clock_gettime(int clock_id, flood_timespec *tp);
]])
local clock = ffi.new("flood_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local raw, gap_ms, next_ms
unauthorized = 0 -- globals, so done() can read them with thread:get()
other = 0
last_other = 0

function init(args)
  gap_ms = 1000 / tonumber(args[1])
  local body = '{"flood":"' .. string.rep("x", tonumber(args[2]) - 12) .. '"}'
  raw = wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "GitHub-Hookshot/bench",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = "00000000-0000-4000-8000-000000000000",
    ["X-Hub-Signature-256"] = "sha256=" .. string.rep("0", 64),
  }, body)
end

function request()
  return raw
end

function delay()
  local now = now_ms()
  local slot = next_ms ~= nil and next_ms > now and next_ms or now -- missed slots are lost
  next_ms = slot + gap_ms
  return slot - now -- wrk truncates to whole ms; the schedule, not the rounding, sets the rate
end

function response(status, _, _)
  if status == 401 then
    unauthorized = unauthorized + 1
  else
    other = other + 1
    last_other = status
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, _)
  local got401, got_other, last = 0, 0, 0
  for _, thread in ipairs(threads) do
    got401 = got401 + thread:get("unauthorized")
    got_other = got_other + thread:get("other")
    if thread:get("other") > 0 then
      last = thread:get("last_other")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'FLOOD_JSON {"requests": %d, "duration_us": %d, "rate": %.1f, "status_401": %d, '
      .. '"status_other": %d, "last_other_status": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6), got401,
    got_other, last, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)
  ))
end
